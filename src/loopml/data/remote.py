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

from pydantic import ValidationError

from loopml.config import RemoteConfig
from loopml.errors import ConfigError, PipelineError
from loopml.project import Project

REMOTE = "loopml"  # the DVC remote's name in .dvc/config


@dataclass(frozen=True)
class Transfer:
    """What a push or pull moved."""

    remote: str
    direction: str  # push | pull
    files: int
    summary: str  # DVC's own last line


def configure(project: Project) -> str:
    """Make `.dvc/config`'s default remote the one loopml.yaml names; returns its URL."""
    from loopml.pipeline import dvc

    remote = project.config.remote
    if not remote.url:
        raise ConfigError("no data remote is configured; set remote.url in loopml.yaml, or run "
                          "`loopml data remote add s3://bucket/path [--endpoint-url URL]`")  # fmt: skip
    url = remote.url if "://" in remote.url else str((project.root / remote.url).resolve())
    if _dvc_remote(project) != (url, remote.endpoint_url):  # each dvc call costs a second: only when it differs
        dvc(project.root, "remote", "add", "--force", "--default", REMOTE, url)
        if remote.endpoint_url:
            dvc(project.root, "remote", "modify", REMOTE, "endpointurl", remote.endpoint_url)
    return url


def _dvc_remote(project: Project) -> tuple[str | None, str | None] | None:
    """(url, endpointurl) of the default remote when it is loopml's, as `.dvc/config` has it."""
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read(project.root / ".dvc" / "config")
    except configparser.Error:
        return None  # DVC will say what is wrong with it
    section = f"'remote \"{REMOTE}\"'"  # DVC writes the section as ['remote "loopml"']
    if parser.get("core", "remote", fallback=None) != REMOTE or not parser.has_section(section):
        return None
    return parser.get(section, "url", fallback=None), parser.get(section, "endpointurl", fallback=None)


def add(project: Project, url: str, endpoint_url: str | None) -> str:
    """`loopml data remote add`: record the remote in loopml.yaml (comments kept), then in DVC."""
    from ruamel.yaml import YAML

    from loopml.fileio import atomic_output

    try:  # loopml.yaml's own rules, before anything is written
        RemoteConfig(url=url, endpoint_url=endpoint_url)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = "URL" if tuple(error["loc"]) == ("url",) else "--endpoint-url"  # the rest are about the endpoint
        raise ConfigError(f"{option}: {error['msg'].removeprefix('Value error, ')}") from None
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
        "NoSuchBucket": "the bucket does not exist: create it, or fix remote.url",
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
