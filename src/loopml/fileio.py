"""Safe writes: every output goes to a temporary file renamed into place, no writer ever touches
one of its inputs (compared by identity: hard links, symlinks and `file://` URLs included), and a
full disk or a read-only folder is one clear line, not a traceback and a truncated file."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlparse

from loopml.errors import LoopmlError


class OutputError(LoopmlError):
    """An output cannot be written (it would replace an input, the disk is full, no permission)."""


def local_path(location: str | Path) -> Path | None:
    """The local file behind a path or a `file://` URL; None for a remote URL (s3://, https://...)."""
    text = str(location)
    if "://" not in text:
        return Path(text)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Do `a` and `b` name the same file? By identity (device and inode) where both exist, so hard
    links, symlinks, `..` and `file://` spellings all count; remote URLs by their normalized text."""
    pa, pb = local_path(a), local_path(b)
    if pa is None or pb is None:
        return pa is None and pb is None and str(a).rstrip("/") == str(b).rstrip("/")
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # one does not exist (yet): compare where they would be
        return pa.resolve() == pb.resolve()


def refuse_overwrite(output: str | Path, inputs: list[str | Path], option: str = "the output") -> None:
    """Raise OutputError when writing `output` would replace one of `inputs`."""
    for source in inputs:
        if same_file(output, source):
            raise OutputError(
                f"{option} {output} is the input file {source}; loopml never overwrites input data: "
                "choose another output path"
            )


def check_writable(path: str | Path, option: str = "the output") -> None:
    """Fail before any work when `path`'s folder is missing or not writable (local paths only)."""
    local = local_path(path)
    if local is None:
        return
    folder = local.parent if str(local.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{option} {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{option} {path}: the folder {folder} is not writable")
    if local.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name")


@contextlib.contextmanager
def atomic_output(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success it replaces `path`, on failure it is
    removed and `path` keeps its old content (or stays absent)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _discard(tmp)
        raise disk_error(target, exc) from None
    except BaseException:
        _discard(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_output(path) as handle:
        handle.write(text)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path, "wb") as handle:
        handle.write(data)


def disk_error(path: str | Path, exc: OSError) -> OutputError:
    """An OSError from writing `path`, said in one line with what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return OutputError(f"cannot write {path}: no space left ({os.strerror(exc.errno)}); free disk space "
                           "and run the command again (nothing was half-written)")  # fmt: skip
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path}: {os.strerror(exc.errno)}; check the folder's permissions")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)
