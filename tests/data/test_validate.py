"""`loopml validate`: schema pinned on first sight; bad data is reported, never modified."""

import hashlib
from pathlib import Path

import pandas as pd

from tests.conftest import loopml, loopml_json

DATA = "data/raw/breast_cancer.parquet"


def digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def corrupt(project: Path, change) -> Path:
    """Replace the raw data with a changed copy (the test plays the upstream data source)."""
    path = project / DATA
    frame = pd.read_parquet(path)
    change(frame)
    frame.to_parquet(path, index=False)
    return path


def fails(project: Path, *args: str, env=None) -> str:
    proc = loopml("validate", *args, cwd=project, env=env, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


def test_first_run_pins_schema_then_validates(tabular):
    first = loopml_json("validate", cwd=tabular)
    assert first["schema_pinned_now"] and first["rows"] == 569 and first["columns"] == 31
    schema = (tabular / "schema.yaml").read_text()
    assert "mean_radius" in schema and "in_range" in schema and "isin" in schema
    second = loopml_json("validate", cwd=tabular)
    assert not second["schema_pinned_now"] and second["failures"] == []


def test_text_in_numeric_column_names_rows_and_keeps_file(tabular):
    loopml("validate", cwd=tabular)

    def text(frame):
        frame["mean_radius"] = frame["mean_radius"].astype(str)  # a CSV export gone wrong
        frame.loc[3, "mean_radius"] = "abc"
        frame.loc[7, "mean_radius"] = "n/a"

    path = corrupt(tabular, text)
    before = digest(path)
    message = fails(tabular)
    assert "mean_radius" in message and "2 row(s)" in message and "row 3: 'abc'" in message
    assert digest(path) == before  # raw data is never modified


def test_nulls_ranges_and_rules_are_counted(tabular):
    loopml("validate", cwd=tabular)

    def bad(frame):
        frame.loc[[0, 1], "mean_texture"] = None
        frame.loc[5, "mean_area"] = 1e9
        frame.loc[9, "diagnosis"] = "unknown"

    corrupt(tabular, bad)
    message = fails(tabular)
    assert "mean_texture: not_nullable failed on 2 row(s)" in message
    assert "mean_area: in_range" in message and "row 5: 1000000000.0" in message
    assert "diagnosis: isin" in message and "'unknown'" in message
    assert "loopml validate --repin" in message  # the way out when the new values are legitimate


def test_rule_from_config_applies(tabular):
    loopml("validate", cwd=tabular)
    message = fails(tabular, env={"LOOPML_DATA__RULES": "{mean_radius: ['> 100']}"})
    assert "mean_radius: greater_than(100.0) failed on 569 row(s)" in message


def test_unreadable_rule_is_a_config_error(tabular):
    message = fails(tabular, env={"LOOPML_DATA__RULES": "{mean_radius: ['positive please']}"})
    assert 'cannot read rule "positive please"' in message


def test_missing_target_suggests_column(tabular):
    message = fails(tabular, env={"LOOPML_DATA__TARGET": "diagnosys"})
    assert 'column "diagnosys"' in message and 'did you mean "diagnosis"' in message


def test_missing_corrupt_and_empty_files(tabular):
    path = tabular / DATA
    original = path.read_bytes()
    path.unlink()
    assert "data file not found" in fails(tabular)
    path.write_bytes(original[: len(original) // 3])
    assert "cannot read it as parquet" in fails(tabular)
    pd.read_parquet(__import__("io").BytesIO(original)).iloc[:0].to_parquet(path)
    assert "the dataset is empty" in fails(tabular)


def test_verbose_shows_traceback(tabular):
    (tabular / DATA).unlink()
    proc = loopml("--verbose", "validate", cwd=tabular, check=False)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
