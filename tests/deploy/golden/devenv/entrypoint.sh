#!/bin/sh
# Starts sshd (key-only) when a public key is given, then JupyterLab as the non-root user.
set -eu
user="${DEVENV_USER:-dev}"
home="/home/$user"
keys="$home/.ssh/authorized_keys"

: > "$keys"
if [ -f /run/secrets/authorized_keys ]; then
  cat /run/secrets/authorized_keys >> "$keys"
fi
if [ -n "${SSH_PUBLIC_KEY:-}" ]; then
  echo "$SSH_PUBLIC_KEY" >> "$keys"
fi
chown "$user:$user" "$keys"
chmod 600 "$keys"
if [ -s "$keys" ]; then
  ssh-keygen -A > /dev/null
  /usr/sbin/sshd -e
  echo "devenv: ssh -p 2222 $user@127.0.0.1" >&2
else
  echo "devenv: no SSH public key (mount one at /run/secrets/authorized_keys or set SSH_PUBLIC_KEY): sshd not started" >&2
fi

if [ -z "${JUPYTER_TOKEN:-}" ]; then
  JUPYTER_TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  echo "devenv: Jupyter token: $JUPYTER_TOKEN" >&2
fi
python3 -c 'import torch; print("devenv: torch", torch.__version__, "sees CUDA:", torch.cuda.is_available())' >&2 || true
exec runuser -u "$user" -- env HOME="$home" PATH="$PATH" JUPYTER_TOKEN="$JUPYTER_TOKEN" \
  jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --ServerApp.root_dir="$home/work" "$@"
