"""The validate stage: pin a schema on first sight, then check every run's data against it.

The raw data is held to the whole pinned schema; labelled live traffic the loop added is held
to its structure and the rules in loopml.yaml (see `schema.structural`)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from loopml.data.dataset import data_digest, read_traffic
from loopml.data.io import read_table
from loopml.data.schema import infer_schema, load_schema, save_schema, structural, validate_frame
from loopml.errors import DataError
from loopml.project import Project


def validate(project: Project, repin: bool = False) -> dict[str, Any]:
    """Validate the project's raw data; raise `DataError` with a report when it fails."""
    started = time.perf_counter()
    cfg = project.config
    frame = read_table(project.data_path)
    pinned = repin or not project.schema_path.exists()
    if pinned:
        if cfg.data.target not in frame.columns:
            validate_frame(frame, infer_schema(frame.iloc[:0], cfg.data.target), {}, cfg.data.target)
        save_schema(infer_schema(frame, cfg.data.target), project.schema_path)
    schema = load_schema(project.schema_path)
    report = validate_frame(frame, schema, cfg.data.rules, cfg.data.target)
    traffic = read_traffic(project, frame)
    if traffic is not None:
        live = validate_frame(traffic, structural(schema), cfg.data.rules, cfg.data.target)
        report.rows += live.rows
        report.failures += [replace(f, column=f"{f.column} (labelled traffic)") for f in live.failures]
        report.warnings += [f"labelled traffic: {w}" for w in live.warnings]
    result = {
        "stage": "validate",
        "seconds": round(time.perf_counter() - started, 3),
        "figure": f"{report.rows} rows, {report.columns} columns" + (", schema pinned" if pinned else ""),
        "rows": report.rows,
        "columns": report.columns,
        "schema": str(project.schema_path.relative_to(project.root)),
        "schema_pinned_now": pinned,
        "data_digest": data_digest(project),
        "warnings": report.warnings,
        "failures": [vars(f) for f in report.failures],
    }
    if not report.ok:
        raise DataError(
            f"{cfg.data.path}: validation failed ({len(report.failures)} check(s)):\n  {report.describe()}\n"
            f"Fix the data; if the new values are legitimate, edit {result['schema']} or data.rules "
            "in loopml.yaml, or re-infer the schema with `loopml validate --repin`."
        )
    project.write_result("validate", result)
    return result
