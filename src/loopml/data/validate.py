"""The validate stage: infer column roles and pin a schema on first sight, then check every run's data.

The raw data is held to the whole pinned schema; labelled live traffic the loop added is held to
its structure and the rules in loopml.yaml (see `schema.structural`). The first run also writes the
column roles into loopml.yaml (`data.columns`), where the user can override them, and every run
reviews the data like a colleague would (`checks`). Raw data is only ever read.
"""

from __future__ import annotations

import time
from dataclasses import replace

from loopml.contracts import DataWarning, ValidateResult
from loopml.data import checks
from loopml.data import roles as R
from loopml.data.dataset import data_digest, read_traffic
from loopml.data.io import CsvOptions, read_table_info
from loopml.data.schema import infer_schema, load_schema, merge_reports, save_schema, structural, validate_frame
from loopml.errors import DataError
from loopml.project import Project

MAX_LISTED_ROLES = 50  # wider tables get only their non-numeric roles written to loopml.yaml


def validate(project: Project, repin: bool = False) -> ValidateResult:
    """Validate the project's raw data; raise `DataError` with a report when it fails."""
    from loopml.data.stream import streams

    started = time.perf_counter()
    cfg = project.config
    if streams(project):
        return _validate_streamed(project, repin, started)
    frame, csv_format = read_table_info(project.data_path, options=CsvOptions.of(cfg.data))
    pinned = repin or not project.schema_path.exists()
    previous_columns = None if pinned else list(load_schema(project.schema_path).columns)
    if pinned:
        if cfg.data.target not in frame.columns:
            validate_frame(frame, infer_schema(frame.iloc[:0], cfg.data.target), {}, cfg.data.target)
        save_schema(infer_schema(frame, cfg.data.target), project.schema_path)
    schema = load_schema(project.schema_path)
    report = validate_frame(frame, schema, cfg.data.rules, cfg.data.target)
    roles, written, warnings = _review(project, frame, previous_columns, report)
    traffic = read_traffic(project, frame)
    if traffic is not None:
        live = validate_frame(traffic, structural(schema), cfg.data.rules, cfg.data.target)
        report.rows += live.rows
        report.failures += _from_traffic(live.failures)
    return _finish(project, started, report, pinned, warnings, roles, written, csv_format)


def _from_traffic(failures: list) -> list:
    return [replace(f, column=f"{f.column} (labelled traffic)") for f in failures]


def _finish(project: Project, started: float, report, pinned: bool, warnings: list, roles: dict[str, str],
            written: bool, csv_format=None) -> ValidateResult:  # fmt: skip
    cfg = project.config
    if (
        csv_format is not None
        and "encoding" in csv_format.detected
        and csv_format.encoding not in ("utf-8", "utf-8-sig")
    ):
        warnings.append(DataWarning(None, "encoding", f"{cfg.data.path} is not UTF-8: read as {csv_format.encoding} "
                                    "(detected); set data.encoding to be sure", "data.encoding"))  # fmt: skip
    figure = f"{report.rows} rows, {report.columns} columns" + (", schema pinned" if pinned else "")
    if written:
        figure += ", roles written to loopml.yaml"
    if warnings:
        figure += f", {len(warnings)} warning(s)"
    result = ValidateResult(
        seconds=round(time.perf_counter() - started, 3), figure=figure, rows=report.rows, columns=report.columns,
        schema=str(project.schema_path.relative_to(project.root)), schema_pinned_now=pinned,
        data_digest=data_digest(project), warnings=warnings, failures=report.failures, roles=roles,
    )  # fmt: skip
    if not report.ok:
        raise DataError(
            f"{cfg.data.path}: validation failed ({len(report.failures)} check(s)):\n  {report.describe()}\n"
            f"Fix the data; if the new values are legitimate, edit {result.schema} or data.rules "
            "in loopml.yaml, or re-infer the schema with `loopml validate --repin`."
        )
    project.write_result(result)
    return result


def _validate_streamed(project: Project, repin: bool, started: float) -> ValidateResult:
    """A streamed table (`loopml.data.stream`), one row group in memory at a time: the schema is
    pinned from every row group's ranges, categories and nulls, and every row is checked against it
    (the raw file against the whole schema, traffic files against its structure). A `unique` rule
    holds within each row group only. The roles and the data review come from a uniform sample."""
    from loopml.data.stream import TRAIN, TableStream

    cfg = project.config
    stream = TableStream.of(project)
    raw = [piece for piece in stream.pieces if piece.source == stream.sources[0]]
    pinned = repin or not project.schema_path.exists()
    previous_columns = None if pinned else list(load_schema(project.schema_path).columns)
    if pinned:
        save_schema(infer_schema((stream.read(piece) for piece in raw), cfg.data.target), project.schema_path)
    schema = load_schema(project.schema_path)
    loose = structural(schema)

    def checked(piece):
        if piece in raw:
            return validate_frame(stream.read(piece), schema, cfg.data.rules, cfg.data.target)
        live = validate_frame(stream.read(piece), loose, cfg.data.rules, cfg.data.target)
        return replace(live, failures=_from_traffic(live.failures))

    report = merge_reports(map(checked, stream.pieces))
    roles, written, warnings = _review(project, stream.sample(TRAIN), previous_columns, report)
    return _finish(project, started, report, pinned, warnings, roles, written)


def _review(project: Project, frame, previous_columns: list[str] | None, report) -> tuple[dict[str, str], bool, list]:
    """The column roles (written to loopml.yaml on first sight) and a colleague's review of `frame`;
    the review's failures join `report`. Returns the roles, whether they were written, the warnings."""
    cfg = project.config
    inferred = R.infer_roles(frame, cfg.data.target)
    roles = R.effective(inferred, cfg.data.columns, cfg.data.exclude)
    written = write_roles(project, roles) if not cfg.data.columns else False
    warnings, failures = checks.review(frame, cfg.data.target, cfg.task, inferred, roles, previous_columns,
                                       cfg.data.checks)  # fmt: skip
    report.failures += failures
    return roles, written, warnings


def write_roles(project: Project, roles: dict[str, str]) -> bool:
    """Record the inferred roles in loopml.yaml (`data.columns`), keeping its comments and order, so
    the user sees and can override them. Wide tables get only their non-numeric roles."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    shown = roles if len(roles) <= MAX_LISTED_ROLES else {k: v for k, v in roles.items() if v != R.NUMERIC}
    if not shown:
        return False
    path = project.root / "loopml.yaml"
    yaml = YAML()
    yaml.preserve_quotes = True
    document = yaml.load(path.read_text())
    data = document.get("data")
    if data is None or "columns" in data:
        return False
    columns = CommentedMap(shown)
    data["columns"] = columns
    data.yaml_set_comment_before_after_key(
        "columns", before="what each column is for (inferred by `loopml validate`; edit to override):\n"
        "numeric, categorical, boolean, datetime, text, id (excluded), ignore (excluded)"
        + ("; columns not listed are numeric" if len(shown) < len(roles) else ""), indent=2)  # fmt: skip
    from loopml.fileio import atomic_output

    with atomic_output(path) as handle:
        yaml.dump(document, handle)
    return True
