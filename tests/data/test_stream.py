"""The streamed table's contract, on small Parquet files: a split every reader agrees on, shards
that cover each epoch's pieces once, equal steps on every rank, bounded memory, clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from loopml.data import stream as S
from loopml.errors import ConfigError
from loopml.train.distributed import World


def table(path, rows: int, row_group: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.integers(0, 5, rows), "row": np.arange(rows)})
    frame["label"] = (frame["a"] > 0).astype(int)
    frame.to_parquet(path, row_group_size=row_group)
    return frame


def positions(stream: S.TableStream, part: str, pieces=None) -> np.ndarray:
    frames = list(stream.frames(part, pieces))
    return np.concatenate([f["row"].to_numpy() for f in frames]) if frames else np.array([], int)


def test_the_split_is_a_partition_fixed_by_position_not_by_layout(tmp_path):
    table(tmp_path / "a.parquet", 5000, 300)
    table(tmp_path / "b.parquet", 5000, 1000)  # the same rows in other row groups
    a = S.TableStream([str(tmp_path / "a.parquet")], test_size=0.2, seed=7, val_size=0.1)
    b = S.TableStream([str(tmp_path / "b.parquet")], test_size=0.2, seed=7, val_size=0.1)
    test, fit, val, train = (positions(a, part) for part in (S.TEST, S.FIT, S.VAL, S.TRAIN))
    assert sorted(np.concatenate([test, train])) == list(range(5000))  # every row once
    assert sorted(np.concatenate([fit, val])) == sorted(train)
    assert 0.17 < len(test) / 5000 < 0.23 and 0.07 < len(val) / len(train) < 0.13
    assert np.array_equal(np.sort(positions(b, S.TEST)), np.sort(test))  # the layout does not move rows
    assert a.count(S.TEST) == len(test) and a.count(S.FIT) == len(fit)  # counted from the footers + hash
    other_seed = S.TableStream([str(tmp_path / "a.parquet")], test_size=0.2, seed=8)
    assert not np.array_equal(np.sort(positions(other_seed, S.TEST)), np.sort(test))


def test_traffic_files_continue_the_table_and_may_lack_columns(tmp_path):
    table(tmp_path / "raw.parquet", 400, 100)
    pd.DataFrame({"a": [1.0] * 50, "label": [1] * 50}).to_parquet(tmp_path / "traffic.parquet")  # no b, no row
    stream = S.TableStream([str(tmp_path / "raw.parquet"), str(tmp_path / "traffic.parquet")], 0.2, 1)
    assert stream.rows == 450 and [p.offset for p in stream.pieces] == [0, 100, 200, 300, 400]
    frames = list(stream.reading(["a", "b", "label"]).frames(S.TRAIN))
    tail = frames[-1]
    assert list(tail.columns) == ["a", "b", "label"] and tail["b"].isna().all()


def test_the_validation_rows_are_capped(tmp_path, monkeypatch):
    table(tmp_path / "t.parquet", 20_000, 2000)
    monkeypatch.setattr(S, "VAL_ROWS", 500)
    stream = S.TableStream([str(tmp_path / "t.parquet")], 0.2, 3, val_size=0.5)
    assert 400 < stream.count(S.VAL) < 600  # not half of 16,000
    assert stream.count(S.FIT) + stream.count(S.VAL) == stream.count(S.TRAIN)


def test_sample_is_uniform_and_bounded(tmp_path):
    table(tmp_path / "t.parquet", 20_000, 1000)
    stream = S.TableStream([str(tmp_path / "t.parquet")], 0.2, 3)
    sample = stream.sample(S.TRAIN, size=2000)
    assert 1700 < len(sample) < 2300
    assert set(sample["row"]) <= set(positions(stream, S.TRAIN))
    assert sample["row"].max() > 18_000 and sample["row"].min() < 1000  # from every part of the file
    assert sample.equals(stream.sample(S.TRAIN, size=2000))


@pytest.mark.parametrize(("world", "workers"), [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_each_epoch_deals_every_piece_to_one_reader(tmp_path, world, workers):
    table(tmp_path / "t.parquet", 6000, 250)  # 24 row groups
    stream = S.TableStream([str(tmp_path / "t.parquet")], 0.2, 5)
    orders = []
    for epoch in range(3):
        dealt = [p for r in range(world) for w in range(workers) for p in stream.shard(epoch, r, world, w, workers)]
        assert sorted(dealt, key=lambda p: p.offset) == stream.pieces
        orders.append([p.offset for p in stream.shard(epoch, 0, world, 0, workers)])
    assert orders[0] != orders[1]  # a new order every epoch (DistributedSampler.set_epoch)


def test_every_rank_takes_the_same_steps_and_no_row_twice(tmp_path):
    from loopml.train.features import NetworkInputs
    from loopml.train.streaming import StreamBatches
    from loopml_runtime import Input

    table(tmp_path / "t.parquet", 5000, 310)
    stream = S.TableStream([str(tmp_path / "t.parquet")], 0.2, 5).reading(["row", "label"])
    # the row number as the only feature, so each batch says which rows it holds
    net = NetworkInputs([Input("row", "number", "int64")], "label", None, [0, 1])
    import torch

    seen = []
    for rank in range(2):
        batches = StreamBatches(stream, net, 64, World(rank=rank, size=2), 2, torch.device("cpu"))
        got = list(batches.epoch(1, None))
        assert len(got) == batches.steps(1)
        assert all(len(xb) <= 64 for xb, _ in got)
        seen.append(np.concatenate([xb.numpy()[:, 0] for xb, _ in got]).astype(int))
    both = np.concatenate(seen)
    assert len(np.unique(both)) == len(both)  # no row on two ranks, none twice
    assert set(both) <= set(positions(stream, S.FIT))  # never a test or validation row
    assert len(both) >= stream.count(S.FIT) - 2 * 2 * 64 * 2  # at most a few batches' rows left out


def test_too_few_row_groups_for_the_readers_is_refused_with_the_fix(tmp_path):
    table(tmp_path / "t.parquet", 1000, 1000)
    stream = S.TableStream([str(tmp_path / "t.parquet")], 0.2, 5)
    with pytest.raises(ConfigError, match=r"1 row group.*2 process\(es\) x 1 DataLoader.*row_group_size"):
        stream.shard(0, 0, 2, 0, 1)


def test_streaming_is_refused_where_it_cannot_work(tmp_path):
    from loopml.project import Project

    frame = table(tmp_path / "t.parquet", 100, 50)
    frame.to_csv(tmp_path / "t.csv", index=False)
    project = Project(tmp_path)

    def config(path: str, streaming, model_type: str = "torch") -> None:
        model = {"type": "torch", "factory": "m.py:build"} if model_type == "torch" else \
            {"type": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"}  # fmt: skip
        (tmp_path / "loopml.yaml").write_text(json.dumps(
            {"name": "t", "task": "classification", "data": {"path": path, "target": "label", "streaming": streaming},
             "model": model}))  # fmt: skip
        project.__dict__.pop("config", None)

    config("t.csv", True)
    with pytest.raises(ConfigError, match="not Parquet: convert it once"):
        S.streams(project)
    config("t.parquet", True, "sklearn")
    with pytest.raises(ConfigError, match="scikit-learn estimator fits in memory"):
        S.streams(project)
    config("t.parquet", "auto")
    assert not S.streams(project)  # 100 rows: far under data.stream_above_mb
    config("t.parquet", True)
    assert S.streams(project)


def test_a_schema_pinned_from_pieces_is_the_schema_of_the_whole(tmp_path):
    from loopml.data.schema import infer_schema

    frame = table(tmp_path / "t.parquet", 3000, 250)
    frame["city"] = np.where(frame["row"] % 7 == 0, "Lyon", "Oslo")
    frame.loc[2900, "city"] = "Kyiv"  # a category only the last row group holds
    frame.loc[17, "a"] = None  # a null only the first holds
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=250)
    stream = S.TableStream([str(tmp_path / "t.parquet")], 0.2, 1)
    pieces = infer_schema((stream.read(p) for p in stream.pieces), "label")
    assert pieces.to_yaml() == infer_schema(pd.read_parquet(tmp_path / "t.parquet"), "label").to_yaml()


def test_streamed_validation_counts_failures_in_every_row_group(tmp_path):
    from loopml.data.schema import merge_reports, validate_frame

    frame = table(tmp_path / "t.parquet", 3000, 250)
    frame.loc[[5, 1500, 2999], "b"] = 99
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=250)
    stream = S.TableStream([str(tmp_path / "t.parquet")], 0.2, 1)
    rules = {"b": ["between 0 and 4"]}
    whole = validate_frame(pd.read_parquet(tmp_path / "t.parquet"), _empty_schema(), rules, "label")
    merged = merge_reports(validate_frame(stream.read(p), _empty_schema(), rules, "label") for p in stream.pieces)
    assert merged.rows == whole.rows == 3000
    assert [(f.column, f.rows) for f in merged.failures] == [(f.column, f.rows) for f in whole.failures] == [("b", 3)]


def _empty_schema():
    import pandera.pandas as pa

    return pa.DataFrameSchema({})
