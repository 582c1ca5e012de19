"""`loopml init`: write a complete project, then `git init` and `dvc init`, and start the (empty)
DVC-tracked folder the loop adds labelled traffic to.

Two ways in: a bundled template (`--template digits|tabular`), or your own table (`--from PATH
--target COLUMN`): the task and each column's role are read from the data and written into
loopml.yaml with the reasons, the data is tracked by DVC where it is (or copied under data/raw/
with `--copy`), and the model is a gradient-boosted tree pipeline that takes the raw columns.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from loopml.errors import ConfigError, DataError, PipelineError

TEMPLATES = ("digits", "tabular", "text")
TASKS = ("auto", "classification", "regression")


@dataclass(frozen=True)
class InitResult:
    project: str
    name: str
    template: str
    files: list[str]
    git_init: bool
    task: str | None = None
    task_reason: str | None = None
    roles: dict[str, str] = field(default_factory=dict)
    data: str | None = None


def init(target: Path, template: str = "digits", force: bool = False) -> InitResult:
    """A project from a bundled template."""
    if template not in TEMPLATES:
        raise ConfigError(f'unknown template "{template}"; expected one of {", ".join(TEMPLATES)}, or --from PATH '
                          "--target COLUMN for your own data")  # fmt: skip
    target, name = _prepare(target, force)
    written = _write_template(target, template, {"name": name})
    git = _git_init(target)
    _dvc_init(target)
    _track_traffic(target)
    return InitResult(str(target), name, template, sorted(written), git)


def init_from(target: Path, source: str, target_column: str, task: str = "auto", copy: bool = False,
              force: bool = False) -> InitResult:  # fmt: skip
    """A project around the user's own table (a local path or any fsspec URL)."""
    from loopml.data import roles as R
    from loopml.data.io import is_url, read_table_info
    from loopml.data.schema import missing_column

    if task not in TASKS:
        raise ConfigError(f'--task must be one of {", ".join(TASKS)}; got "{task}"')
    local = None if is_url(source) else Path(source).resolve()
    frame, csv_format = read_table_info(str(local) if local else source)
    if target_column not in frame.columns:
        raise DataError(f"{source}: " + missing_column(target_column, frame, "--target"))
    inferred_task, reason = R.infer_task(frame[target_column])
    if task == "auto":
        task = inferred_task
    else:
        reason = f"set with --task (the data suggested {inferred_task}: {reason})"
    if task == "regression" and inferred_task == "classification" and not _numeric(frame[target_column]):
        raise DataError(f"--task regression needs a numeric target; {target_column!r} holds text")
    target, name = _prepare(target, force)
    if local is not None and (copy or not local.is_relative_to(target)):
        if copy:
            destination = target / "data" / "raw" / local.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local, destination)
            data_path = str(destination.relative_to(target))
        else:
            data_path = str(local)  # tracked where it is: DVC records its hash as a dependency
    elif local is not None:
        data_path = str(local.relative_to(target))
    else:
        data_path = source
    roles = R.effective(R.infer_roles(frame, target_column), {}, [])
    written = _write_template(target, "own", {"name": name, "source": source})
    (target / "loopml.yaml").write_text(_own_config(name, task, reason, data_path, target_column, roles, csv_format))
    written.append("loopml.yaml")
    git = _git_init(target)
    _dvc_init(target)
    if copy or (local is not None and local.is_relative_to(target)):
        from loopml.pipeline import dvc

        dvc(target, "add", "-q", data_path)
        written.append(f"{data_path}.dvc")
    _track_traffic(target)
    return InitResult(str(target), name, "own", sorted(written), git, task, reason, roles, data_path)


def _numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _own_config(name: str, task: str, reason: str, path: str, target: str, roles: dict[str, str], csv_format) -> str:
    """loopml.yaml for a raw table: every key explained, the roles listed for the user to edit."""
    import json

    def q(text: str) -> str:
        return json.dumps(text)  # a YAML-safe quoted string

    estimator = "HistGradientBoostingClassifier" if task == "classification" else "HistGradientBoostingRegressor"
    if task == "classification":
        gates = ('gates:                             # relative to a dummy model on the same split\n'
                 '  vs_baseline:\n'
                 '    balanced_accuracy: ">= 0.05"     # at least 5 points better than guessing the commonest class\n'
                 '  latency_p95_ms: "<= 100"           # best of 5 rounds of single-row predictions, one thread\n'
                 '  vs_champion:\n'
                 '    accuracy: ">= -0.005"')  # fmt: skip
    else:
        gates = ('gates:                             # relative to a dummy model on the same split\n'
                 '  vs_baseline:\n'
                 '    r2: ">= 0.05"                    # explains at least 5% more variance than predicting the mean\n'
                 '  latency_p95_ms: "<= 100"           # best of 5 rounds of single-row predictions, one thread\n'
                 '  vs_champion:\n'
                 '    mae: "<= 0"')  # fmt: skip
    encoding = ""
    if csv_format is not None:
        encoding = (f"  encoding: {csv_format.encoding}" + " " * max(1, 24 - len(csv_format.encoding))
                    + f"# detected ({csv_format.describe()})\n")  # fmt: skip
        if csv_format.delimiter != ",":
            encoding += f"  delimiter: {q(csv_format.delimiter)}\n"
        if csv_format.decimal != ".":
            encoding += f"  decimal: {q(csv_format.decimal)}\n"
    columns = "".join(f"    {q(column)}: {role}\n" for column, role in roles.items())
    return (
        "# loopml project file: the one source of truth for the loop. Every key has a default;\n"
        "# `LOOPML_TRAIN__SEED=1 loopml run` style environment variables override it.\n"
        f"name: {name}{' ' * max(1, 28 - len(name))}# the registered model's name in MLflow\n"
        f"task: {task}{' ' * max(1, 28 - len(task))}# {reason}\n\n"
        "data:\n"
        f"  path: {q(path)}\n"
        f"  target: {q(target)}\n"
        "  test_size: 0.2                   # held out for evaluation and the gates\n"
        "  seed: 42\n"
        f"{encoding}"
        "  # what each column is for, inferred from the data (edit to override): numeric, categorical,\n"
        "  # boolean, datetime, text (left out of tabular models), id and ignore (both excluded)\n"
        "  columns:\n"
        f"{columns}\n"
        "model:                             # raw columns in, preprocessing inside the model\n"
        "  type: sklearn\n"
        f"  estimator: sklearn.ensemble.{estimator}\n"
        "  params: {random_state: 42}         # scikit-learn's defaults: 100 rounds, early stopping past 10,000 rows\n"
        "  preprocess: auto                 # categories, dates and missing values handled inside the model\n\n"
        "train:\n"
        "  seed: 42                         # scikit-learn estimators take their other settings from model.params\n\n"
        f"{gates}\n\n"
        "optimize:                          # `loopml optimize`: faster variants judged by the same gates\n"
        "  variants: auto                   # skl2onnx -> ONNX Runtime where the model takes numbers only\n\n"
        "loop:                              # `loopml monitor --watch`: drift, retrain, canary, promote or roll back\n"
        "  server: http://127.0.0.1:8000    # the `loopml serve` canaries run on (admin token: LOOPML_ADMIN_TOKEN)\n"
        "  min_labelled: 200                # labelled live rows (POST /feedback) needed before a retrain\n"
    )  # fmt: skip


def _prepare(target: Path, force: bool) -> tuple[Path, str]:
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder; choose another DIR")
    if target.exists() and any(target.iterdir()) and not force:
        raise ConfigError(
            f"{target} is not empty; choose an empty or new DIR, or pass --force to write the "
            "template into it (files with the same names are overwritten)"
        )
    target.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", target.name).strip("-.") or "project"
    return target, name


def _write_template(target: Path, template: str, values: dict[str, str]) -> list[str]:
    written = []
    source = resources.files("loopml.templates").joinpath(template)
    for relative, file in _walk(source):
        text = file.read_text()
        for key, value in values.items():
            text = text.replace("{{ " + key + " }}", value)
        out = target / relative.replace("dot-", ".")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        written.append(str(out.relative_to(target)))
    return written


def _walk(folder, prefix: str = ""):
    for entry in folder.iterdir():
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


def _git_init(target: Path) -> bool:
    """`git init` unless the folder already belongs to a repository that does not ignore it."""
    if shutil.which("git") is None:
        raise PipelineError("git is not installed; install it (e.g. `apt-get install git`)")
    inside = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=target, capture_output=True, text=True)
    if inside.returncode == 0:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(target)], cwd=inside.stdout.strip())
        if ignored.returncode != 0:
            return False
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    return True


def _dvc_init(target: Path) -> None:
    from loopml.pipeline import dvc

    if (target / ".dvc").is_dir():
        return
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=target, capture_output=True, text=True)
    subdir = ["--subdir"] if Path(top.stdout.strip()).resolve() != target else []
    # analytics off: no network calls; autostage: DVC `git add`s what it changes, no reminders
    dvc(target, "init", "-q", *subdir)
    dvc(target, "config", "core.analytics", "false")
    dvc(target, "config", "core.autostage", "true")


def _track_traffic(target: Path) -> None:
    """`dvc add data/traffic` while it is empty: the pipeline depends on it from the start, and each
    retraining set the loop writes there becomes a new DVC version of it."""
    from loopml.pipeline import dvc_add

    (target / "data" / "traffic").mkdir(parents=True, exist_ok=True)
    dvc_add(target, "data/traffic")
