"""Data versions that travel: the project's DVC remote (`remote:` in loopml.yaml), and pushing and
pulling the data versions and stage outputs through it.

loopml.yaml is the source of truth; `.dvc/config` (committed with the project) is brought in line
with it before every push or pull, so a clone knows the remote too. Credentials never pass through
loopml.yaml: DVC's S3, GCS and Azure backends read them from the environment (or the project's
`.env`), e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopml.errors import ConfigError, PipelineError
from loopml.project import Project

REMOTE = "loopml"  # the DVC remote's name in .dvc/config
SCHEMES = ("s3://", "gs://", "gcs://", "azure://", "az://", "ssh://", "http://", "https://", "webdav://")


@dataclass(frozen=True)
class Transfer:
    """What a push or pull moved."""

    remote: str
    direction: str  # push | pull
    files: int
    summary: str  # DVC's own last line


def check_url(url: str) -> str:
    """A remote URL DVC can use, without credentials in it."""
    if re.match(r"^[a-z0-9+]+://[^/@]*:[^/@]*@", url):
        raise ConfigError(f"the data remote {re.sub(r'//[^@]*@', '//', url)} carries credentials in its URL; "
                          "put them in the environment or .env (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")  # fmt: skip
    if "://" in url and not url.startswith(SCHEMES):
        raise ConfigError(f"the data remote {url!r} has a scheme DVC does not know; expected a folder or one of "
                          f"{', '.join(SCHEMES)}")  # fmt: skip
    return url


def configure(project: Project) -> str:
    """Make `.dvc/config`'s default remote the one loopml.yaml names; returns its URL."""
    from loopml.pipeline import dvc

    remote = project.config.remote
    if not remote.url:
        raise ConfigError("no data remote is configured; set remote.url in loopml.yaml, or run "
                          "`loopml data remote add s3://bucket/path [--endpoint-url URL]`")  # fmt: skip
    url = check_url(remote.url)
    if "://" not in url:
        url = str((project.root / url).resolve())
    dvc(project.root, "remote", "add", "--force", "--default", REMOTE, url)
    if remote.endpoint_url:
        dvc(project.root, "remote", "modify", REMOTE, "endpointurl", remote.endpoint_url)
    return url


def add(project: Project, url: str, endpoint_url: str | None) -> str:
    """`loopml data remote add`: record the remote in loopml.yaml (comments kept), then in DVC."""
    from ruamel.yaml import YAML

    from loopml.fileio import atomic_output

    check_url(url)
    if endpoint_url and not endpoint_url.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint-url must be an http(s) URL like http://127.0.0.1:9000; got {endpoint_url!r}")
    path = project.root / "loopml.yaml"
    yaml = YAML()
    yaml.preserve_quotes = True
    document = yaml.load(path.read_text())
    document["remote"] = {"url": url, **({"endpoint_url": endpoint_url} if endpoint_url else {})}
    document.yaml_set_comment_before_after_key(
        "remote", before="where data versions travel (DVC remote); credentials: the environment or .env"
    )
    with atomic_output(path) as handle:
        yaml.dump(document, handle)
    return configure(Project(project.root))


def push(project: Project) -> Transfer:
    return _transfer(project, "push")


def pull(project: Project) -> Transfer:
    return _transfer(project, "pull")


def _transfer(project: Project, direction: str) -> Transfer:
    from loopml.pipeline import dvc

    url = configure(project)
    try:
        said = dvc(project.root, direction, "--remote", REMOTE)
    except PipelineError as exc:
        raise PipelineError(f"`dvc {direction}` to the data remote {url} failed: {_why(str(exc))}") from None
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    summary = lines[-1] if lines else "everything is up to date"
    counted = re.search(r"(\d+) files? (?:pushed|fetched|added)", said)
    return Transfer(url, direction, int(counted[1]) if counted else 0, summary)


def _why(text: str) -> str:
    """DVC's error, with the fix for the usual causes."""
    hints = {
        "NoSuchBucket": "the bucket does not exist: create it, or fix data.remote",
        "InvalidAccessKeyId": "the S3 server does not know the access key: check AWS_ACCESS_KEY_ID",
        "SignatureDoesNotMatch": "the secret key is wrong: check AWS_SECRET_ACCESS_KEY",
        "Unable to locate credentials": "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(the environment or the project's .env)",
        "Could not connect to the endpoint": "the S3 endpoint does not answer: check remote.endpoint_url",
        "Connect call failed": "the S3 endpoint does not answer: check remote.endpoint_url",
        "(403)": "the S3 server refused these credentials for this bucket: check AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (the environment or the project's .env)",
        "dvc-s3": "pip install 'loopml[team]' (DVC's S3 support)",
    }
    text = text.split("Having any troubles?")[0]  # DVC's support advert
    detail = " ".join(text.split())[-400:]
    for needle, hint in hints.items():
        if needle in text:
            return f"{hint} ({detail})"
    return detail
