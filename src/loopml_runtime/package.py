"""The model package on disk, and the raw input columns it takes.

    loopml-model.json   kind, task, inputs (the raw columns, as in the user's file), classes,
                        scaling, factory and params
    weights.pt          torch state_dict (torch models), plus a copy of the factory file
    preprocessor.joblib the fitted column preprocessing of a torch model (raw columns -> numbers)
    estimator.joblib    the fitted estimator (scikit-learn-compatible models; pipelines carry
                        their own preprocessing)
    model.onnx          an optimized variant run by ONNX Runtime (meta: runtime "onnxruntime")
    module.pt           an optimized torch variant saved whole (pruned, factorized, int8)
    encoder/, head.pt, vocabulary.txt   a text model (see loopml_runtime.text)
    schema.yaml, reference_profile.json, environment.json   what serving and monitoring need

`conform` puts any table into the columns and types the model was trained on; training and every
prediction path call it, so offline and online predictions agree.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml_runtime.errors import InputError

META_FILE = "loopml-model.json"
FORMAT = 2  # 1: numeric features only ("features", "feature_dtypes"); still loadable
KINDS = ("number", "bool", "string", "datetime")


@dataclass(frozen=True)
class Input:
    """One raw input column: its name, what it holds, and (numbers) the dtype it was trained in."""

    name: str
    kind: str  # number, bool, string or datetime
    dtype: str | None = None  # numbers: e.g. "int64", "float32"; datetimes: the parse format
    role: str | None = None  # what training made of it: numeric, categorical, text, datetime, ...

    @classmethod
    def of(cls, name: str, series: pd.Series, role: str | None = None) -> Input:
        """The input a training column makes."""
        if pd.api.types.is_bool_dtype(series):
            return cls(name, "bool", None, role)
        if pd.api.types.is_numeric_dtype(series):
            return cls(name, "number", str(series.dtype), role)
        if pd.api.types.is_datetime64_any_dtype(series):
            return cls(name, "datetime", "ISO8601", role)
        return cls(name, "string", None, role)


def inputs_of(meta: dict[str, Any]) -> list[Input]:
    if "inputs" in meta:
        return [Input(**spec) for spec in meta["inputs"]]
    dtypes = meta.get("feature_dtypes") or {}  # format 1: numeric features
    return [Input(name, "number", dtypes.get(name, "float64")) for name in meta["features"]]


def conform(frame: pd.DataFrame, inputs: list[Input]) -> pd.DataFrame:
    """`frame`'s input columns, in training order and types; `InputError` names what does not fit.

    Numbers keep their training dtype (integers become float where values are missing), booleans
    become 0/1 floats, text becomes Python strings, datetimes are parsed. Missing values stay missing
    (NaN / None / NaT): whether the model can take them is the model's business."""
    missing = [i.name for i in inputs if i.name not in frame.columns]
    if missing:
        shown = ", ".join(i.name for i in inputs[:8]) + (" ..." if len(inputs) > 8 else "")
        raise InputError(f"missing input column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}; the model "
                         f"takes {len(inputs)} columns: {shown}")  # fmt: skip
    names = [spec.name for spec in inputs]
    changed = {spec.name: _column(frame[spec.name], spec) for spec in inputs if not _fits(frame[spec.name], spec)}
    if not changed:  # the common case (training data, files of numbers): one selection, no copies per column
        return frame if list(frame.columns) == names else frame[names]
    return pd.DataFrame({n: changed[n] if n in changed else frame[n] for n in names}, index=frame.index)


def _fits(series: pd.Series, spec: Input) -> bool:
    """Is the column already as the model takes it (numbers in their training dtype, text as objects)?"""
    if spec.kind == "number":
        return series.dtype == np.dtype(spec.dtype or "float64")
    if spec.kind == "datetime":
        return series.dtype == np.dtype("datetime64[ns]")
    return False


def _column(series: pd.Series, spec: Input) -> pd.Series:
    if spec.kind == "number":
        if pd.api.types.is_bool_dtype(series) or (series.dtype == object and series.map(type).eq(bool).any()):
            raise InputError(f"column {spec.name!r} holds true/false; the model takes numbers there")
        if not pd.api.types.is_numeric_dtype(series):
            numbers = pd.to_numeric(series, errors="coerce")
            bad = series[numbers.isna() & series.notna()]
            if len(bad):
                raise InputError(f"column {spec.name!r} must hold numbers; row {bad.index[0]} holds {bad.iloc[0]!r}")
            series = numbers
        dtype = np.dtype(spec.dtype or "float64")
        if dtype.kind in "iu" and (series.isna().any() or (series % 1 != 0).any()):
            return series.astype(np.float64)
        return series.astype(dtype, copy=False)
    if spec.kind == "bool":
        if pd.api.types.is_bool_dtype(series):
            return series.astype(np.float64)
        values = series.map(_truth)
        bad = series[values.isna() & series.notna()]
        if len(bad):
            raise InputError(f"column {spec.name!r} must hold true/false; row {bad.index[0]} holds {bad.iloc[0]!r}")
        return values.astype(np.float64)
    if spec.kind == "datetime":
        return _datetimes(series, spec)
    present = series.notna()
    text = series.astype(object).where(present, None)
    if spec.role == "text":  # free text for a text model: a number or a list there is a caller's mistake
        wrong = text[text.map(lambda v: v is not None and not isinstance(v, str))]
        if len(wrong):
            raise InputError(f"column {spec.name!r} takes text (strings); row {wrong.index[0]} holds "
                             f"{type(wrong.iloc[0]).__name__} {wrong.iloc[0]!r}")  # fmt: skip
    elif not pd.api.types.is_string_dtype(series) or series.dtype != object:
        text = text.map(lambda v: v if v is None or isinstance(v, str) else _text(v))
    # an empty text is a missing value, as a CSV reader makes it (and as BYTES tensors must send it)
    return text.where(text != "", None).astype(object)


def _truth(value: Any) -> float | None:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    return None


_BOOL_WORDS = {
    "true": 1.0,
    "false": 0.0,
    "yes": 1.0,
    "no": 0.0,
    "y": 1.0,
    "n": 0.0,
    "t": 1.0,
    "f": 0.0,
    "1": 1.0,
    "0": 0.0,
}


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 12345.0 read from a CSV is the text "12345"
    return str(value)


def _datetimes(series: pd.Series, spec: Input) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        text = series.where(series.notna(), None)
        parsed = pd.to_datetime(text, format=spec.dtype or "ISO8601", errors="coerce", utc=True)
        bad = series[parsed.isna() & series.notna()]
        if len(bad):
            raise InputError(f"column {spec.name!r} must hold dates ({spec.dtype or 'ISO 8601'}); row "
                             f"{bad.index[0]} holds {bad.iloc[0]!r}")  # fmt: skip
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def save_package(path: Path, meta: dict[str, Any], model: Any = None, factory_file: Path | None = None,
                 preprocessor: Any = None, extra_files: dict[str, Path] | None = None) -> None:  # fmt: skip
    """Write a package folder (replacing an earlier one): meta, the model, and what travels with it."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    meta = {"format": FORMAT, **meta}
    meta["inputs"] = [asdict(i) if isinstance(i, Input) else i for i in meta["inputs"]]
    if factory_file is not None:  # a user's module: torch factories, custom estimators pickled by reference
        shutil.copy(factory_file, path / factory_file.name)
        meta["factory_file"] = factory_file.name
    if meta["kind"] == "text":
        from loopml_runtime.text import save_text_model

        save_text_model(path, model)
    elif meta["kind"] == "torch":
        import torch

        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path / "weights.pt")
    else:
        import joblib

        joblib.dump(model, path / "estimator.joblib")
    if preprocessor is not None:
        import joblib

        joblib.dump(preprocessor, path / "preprocessor.joblib")
        meta["preprocessor"] = "preprocessor.joblib"
    for name, source in (extra_files or {}).items():
        if source.exists():
            shutil.copy(source, path / name)
    (path / META_FILE).write_text(json.dumps(meta, indent=2, default=_plain) + "\n")


# a text model's encoder weights and head are model files too: its tokenizer and vocabulary stay
MODEL_FILES = ("weights.pt", "estimator.joblib", "model.onnx", "module.pt", "model.safetensors", "head.pt")


def derive_package(base: Path, path: Path, meta: dict[str, Any], model_file: Path) -> None:
    """A variant's package: `base`'s folder (inputs, preprocessing, schema, profile, environment) with
    its model file replaced by `model_file` and its meta updated by `meta` (runtime, model_file, ...)."""
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(base, path, ignore=shutil.ignore_patterns(*MODEL_FILES))
    shutil.copy(model_file, path / meta["model_file"])
    merged = {**json.loads((base / META_FILE).read_text()), **meta}
    (path / META_FILE).write_text(json.dumps(merged, indent=2, default=_plain) + "\n")


def package_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
