"""Fast facts about the tracking store without importing MLflow (1-2 s): is a local SQLite store
sound, does a run or a registered version still exist, where do the store and its artifacts live and
do they answer. `loopml run` asks before `dvc repro`, so a reset or replaced store is never mistaken
for "cached and registered"; `loopml doctor` reports where things live."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import RegistryUnavailable

SQLITE_HEADER = b"SQLite format 3\x00"
TIMEOUT_S = 5.0


def redact(uri: str) -> str:
    """A store URI fit for messages and logs: no user, password or token in it."""
    return re.sub(r"(?<=://)[^/@\s]*@", "", uri)


@dataclass(frozen=True)
class StoreFacts:
    """Where runs, the registry and artifacts live, and whether each answered (None: not asked)."""

    tracking: str  # the tracking URI, without secrets
    answers: bool | None
    artifacts: str | None  # where the project's artifacts go (None: not known yet)
    artifacts_answer: bool | None
    error: str | None = None


def facts(tracking_uri: str, experiment: str, local_artifacts: Path | None = None) -> StoreFacts:
    """What `loopml doctor` reports about the store of the project (experiment) `experiment`."""
    where = redact(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        try:
            check_sqlite(path)
        except RegistryUnavailable as exc:
            return StoreFacts(where, False, str(local_artifacts) if local_artifacts else None, None, str(exc))
        usable = path.is_file() or not path.parent.exists() or os.access(path.parent, os.W_OK)
        return StoreFacts(where, usable, str(local_artifacts) if local_artifacts else None, usable)
    if not tracking_uri.startswith(("http://", "https://")):
        return StoreFacts(where, None, None, None)  # a database URI: MLflow itself will tell
    try:
        _get(tracking_uri, "/health")
    except OSError as exc:
        return StoreFacts(where, False, None, None, _reason(exc))
    found = _rest(tracking_uri, "experiments/get-by-name", {"experiment_name": experiment}) or {}
    location = found.get("experiment", {}).get("artifact_location")
    if location and not location.startswith("mlflow-artifacts:"):
        return StoreFacts(where, True, redact(location), None)  # the client writes there itself
    # artifacts proxied by the server (its --artifacts-destination): a listing goes all the way
    try:
        _get(tracking_uri, "/api/2.0/mlflow-artifacts/artifacts?path=")
    except OSError as exc:
        return StoreFacts(where, True, location or "proxied by the server", False, _reason(exc))
    return StoreFacts(where, True, location or "proxied by the server", True)


def _get(tracking_uri: str, path: str) -> bytes:
    with urllib.request.urlopen(tracking_uri.rstrip("/") + path, timeout=TIMEOUT_S) as response:
        return response.read()


def _reason(exc: OSError) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        body = exc.read(300).decode("utf-8", "replace")
        return f"HTTP {exc.code}: {body}".strip()
    return str(getattr(exc, "reason", exc))


def check_sqlite(path: Path) -> None:
    """Refuse an empty or foreign file where the SQLite store should be (a missing one is fine: new)."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if not header:
        raise RegistryUnavailable(
            f"the MLflow store {path} is empty (0 bytes): it lost its data. Restore it from a backup, or delete "
            "it to start a new, empty store (every registered version in it is then gone)"
        )
    if header != SQLITE_HEADER:
        raise RegistryUnavailable(f"the MLflow store {path} is not an SQLite database; restore it from a backup, "
                                  "or move it away to start a new store")  # fmt: skip


def run_exists(tracking_uri: str, run_id: str) -> bool | None:
    """Whether the store holds `run_id`; None when this cannot be told quickly (then DVC decides)."""
    if tracking_uri.startswith("sqlite:///"):
        return _sqlite_one(tracking_uri, "SELECT 1 FROM runs WHERE run_uuid = ? AND lifecycle_stage = 'active'",
                           (run_id,)) is not None  # fmt: skip
    found = _rest(tracking_uri, "runs/get", {"run_id": run_id})
    return None if found is None else bool(found)


def version_run(tracking_uri: str, name: str, version: str) -> str | None:
    """The run id behind a registered version ("" when the version does not exist; None: unknown)."""
    if tracking_uri.startswith("sqlite:///"):
        row = _sqlite_one(tracking_uri, "SELECT run_id FROM model_versions WHERE name = ? AND version = ?",
                          (name, int(version)))  # fmt: skip
        return "" if row is None else (row[0] or "")
    found = _rest(tracking_uri, "model-versions/get", {"name": name, "version": version})
    if found is None:
        return None
    return found.get("model_version", {}).get("run_id", "") if found else ""


def _sqlite_one(tracking_uri: str, query: str, args: tuple):
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    check_sqlite(path)
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT_S) as db:
            return db.execute(query, args).fetchone()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            return None
        raise RegistryUnavailable(f"the MLflow store {path} is damaged ({exc}); restore it from a backup, or move "
                                  "it away to start a new store") from None  # fmt: skip


def _rest(tracking_uri: str, endpoint: str, params: dict[str, str]) -> dict | None:
    """GET /api/2.0/mlflow/<endpoint>: the JSON, {} when not found, None when unknown (no answer)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return {} if exc.code == 404 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None
