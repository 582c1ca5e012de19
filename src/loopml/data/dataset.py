"""The dataset a project trains and evaluates on: features, target, one deterministic split.

Every stage that needs data calls `load_dataset`, so train and evaluate always agree on
which rows are held out (stratified for classification, seeded by `data.seed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from loopml.data.io import read_table
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
    frame = read_table(project.data_path)
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
