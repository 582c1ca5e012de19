"""The dataset a project trains and evaluates on: features, target, one deterministic split.

Every stage that needs data calls `load_dataset`, so train and evaluate always agree on
which rows are held out (stratified for classification, seeded by `data.seed`). The data is
the raw table plus any labelled live traffic the loop has added under `data.traffic`; neither
is ever written here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from loopml.data.io import file_digest, is_url, read_table
from loopml.data.schema import missing_column
from loopml.errors import DataError
from loopml.project import Project


@dataclass
class Dataset:
    X_train: pd.DataFrame
    y_train: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series
    features: list[str]
    classes: list | None  # sorted class labels for classification, None for regression

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0


def load_dataset(project: Project) -> Dataset:
    from sklearn.model_selection import train_test_split

    cfg = project.config
    frame = read_data(project)
    target = cfg.data.target
    if target not in frame.columns:
        raise DataError(f"{cfg.data.path}: " + missing_column(target, frame, "data.target"))
    features = [str(c) for c in frame.columns if c != target]
    if not features:
        raise DataError(f"{cfg.data.path}: no feature columns besides the target {target!r}")
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise DataError(
            f"{cfg.data.path}: columns {non_numeric[:5]} are not numeric; loopml trains on numeric "
            "features: encode them in the prepare stage (run `loopml validate` for the failing rows)"
        )
    y = frame[target]
    if y.isna().any():
        raise DataError(f"{cfg.data.path}: target {target!r} has {int(y.isna().sum())} missing value(s)")
    classes = None
    stratify = None
    if cfg.task == "classification":
        classes = sorted(y.unique().tolist())
        if len(classes) < 2:
            raise DataError(f"{cfg.data.path}: target {target!r} has a single class {classes}; need two or more")
        counts = y.value_counts()
        stratify = y if counts.min() >= 2 else None
    elif not pd.api.types.is_numeric_dtype(y):
        raise DataError(f"{cfg.data.path}: a regression target must be numeric; {target!r} is {y.dtype}")
    if len(frame) < 10:
        raise DataError(f"{cfg.data.path}: only {len(frame)} rows; need at least 10 to split train/test")
    X_train, X_test, y_train, y_test = train_test_split(
        frame[features], y, test_size=cfg.data.test_size, random_state=cfg.data.seed, stratify=stratify
    )
    return Dataset(X_train, y_train, X_test, y_test, features, classes)


def to_matrix(frame: pd.DataFrame) -> np.ndarray:
    return frame.to_numpy(dtype=np.float32, na_value=np.nan)


def traffic_files(project: Project) -> list:
    folder = project.traffic_dir
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def read_data(project: Project) -> pd.DataFrame:
    """The raw table, then the labelled traffic rows."""
    frame = read_table(project.data_path)
    traffic = read_traffic(project, frame)
    return frame if traffic is None else pd.concat([frame, traffic], ignore_index=True)


def read_traffic(project: Project, raw: pd.DataFrame) -> pd.DataFrame | None:
    """The labelled traffic rows in the raw table's columns (lossless casts to its dtypes), or None."""
    files = traffic_files(project)
    if not files:
        return None
    extra = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    missing = [c for c in raw.columns if c not in extra.columns]
    if missing:
        raise DataError(
            f"{project.config.data.traffic}: traffic files lack the columns {missing[:5]} of "
            f"{project.config.data.path}; they were written for another dataset: move them out of the "
            "folder and run `dvc add` on it again"
        )
    extra = extra[list(raw.columns)]
    for column in raw.columns:
        kind = raw[column].dtype
        values = extra[column]
        if pd.api.types.is_integer_dtype(kind) and values.notna().all() and (values % 1 == 0).all():
            extra[column] = values.astype(kind)
    return extra


def data_digest(project: Project) -> str:
    """A digest of everything `read_data` reads: the raw file's, combined with the traffic files'."""
    import hashlib

    raw = "remote" if is_url(project.data_path) else file_digest(project.data_path)
    files = traffic_files(project)
    if not files:
        return raw
    return hashlib.md5("".join([raw, *(file_digest(f) for f in files)]).encode()).hexdigest()
