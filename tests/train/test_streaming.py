"""Data larger than memory, end to end: digits in small Parquet row groups, streamed by two DDP
processes with a DataLoader worker each, evaluated on the split the stream defines, with the
reference profile counted over every training row. (bench/train_memory.py shows the memory flat.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from loopml.data.stream import TRAIN, TableStream
from tests.conftest import loopml, loopml_json
from tests.train.test_distributed import train_runs

pytestmark = pytest.mark.slow


def test_a_streamed_table_trains_on_two_processes_and_passes_the_gates(digits):
    raw = digits / "data" / "raw" / "digits.parquet"
    pd.read_parquet(raw).to_parquet(raw, row_group_size=100)  # 18 row groups: 2 ranks x 1 worker each
    config = yaml.safe_load((digits / "loopml.yaml").read_text())
    config["data"]["streaming"] = True
    config["train"]["num_workers"] = 1
    config["train"]["distributed"] = {"nproc_per_node": 2}
    (digits / "loopml.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    loopml("validate", cwd=digits)
    trained = loopml_json("train", cwd=digits)
    assert trained["world_size"] == 2 and trained["epochs_run"] >= 3
    (run,) = train_runs(digits)  # one MLflow run, whatever the processes and workers
    evaluated = loopml_json("evaluate", cwd=digits)
    assert evaluated["metrics"]["accuracy"] >= 0.95 and evaluated["registrable"]

    stream = TableStream([str(raw)], config["data"]["test_size"], config["data"]["seed"])
    profile = json.loads((digits / "outputs" / "model" / "reference_profile.json").read_text())
    column = next(c for c in profile["columns"] if c["name"] == "pixel_36")
    assert column["rows"] == stream.count(TRAIN)  # every training row counted, not the sample
    report = (digits / "reports" / "evaluation.html").read_text()
    assert f"{stream.count(TRAIN)} train · {evaluated_rows(stream)} test" in report


def evaluated_rows(stream: TableStream) -> int:
    from loopml.data.stream import TEST

    return stream.count(TEST)
