"""Raw columns -> the float32 inputs and the targets a network trains on.

The preprocessing (imputation, one-hot categories, dates) is fitted on the training rows, or on a
streamed table's sample of them; standard scaling of the inputs, and of a regression target, is
fitted on the same rows. The fitted `NetworkInputs` then turns any batch of raw rows into arrays,
in the training process or in a DataLoader worker (it pickles), and its scales go into the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from loopml.errors import ModelError

if TYPE_CHECKING:
    import pandas as pd

    from loopml_runtime import Input


@dataclass
class NetworkInputs:
    inputs: list[Input]
    target: str
    transformer: object | None  # the fitted preprocessing, or None: the columns are numbers already
    classes: list | None  # classification: the labels, in output order
    feature_scale: dict | None = None  # {"mean": [...], "std": [...]} of the network's inputs
    target_scale: dict | None = None  # regression: {"mean", "std"} of the target

    @classmethod
    def fit(cls, inputs: list[Input], target: str, transformer, classes: list | None, X: pd.DataFrame,
            y: pd.Series, standardize: bool) -> tuple[NetworkInputs, np.ndarray, np.ndarray]:  # fmt: skip
        """Fit on X/y (conformed raw rows); return the fitted object and X/y as arrays."""
        fitted = cls(inputs, target, transformer, classes)
        if transformer is not None:
            features = np.asarray(transformer.fit_transform(X), dtype=np.float32)
        else:
            features = X.to_numpy(dtype=np.float32, na_value=np.nan)
        _refuse_missing(features)
        if classes is None:
            raw = y.to_numpy(dtype=np.float64)
            fitted.target_scale = {"mean": float(raw.mean()), "std": float(raw.std() or 1.0)}
        if standardize:
            std = features.std(axis=0)
            fitted.feature_scale = {"mean": features.mean(axis=0).tolist(),
                                    "std": np.where(std > 0, std, 1.0).tolist()}  # fmt: skip
            features = fitted._scaled(features)
        return fitted, features, fitted.targets(y)

    def features(self, X: pd.DataFrame) -> np.ndarray:
        """Conformed raw rows -> the network's inputs."""
        if self.transformer is not None:
            out = np.asarray(self.transformer.transform(X), dtype=np.float32)
        else:
            out = X.to_numpy(dtype=np.float32, na_value=np.nan)
        _refuse_missing(out)
        return self._scaled(out) if self.feature_scale else out

    def targets(self, y: pd.Series) -> np.ndarray:
        if self.classes is not None:
            return y.map({label: i for i, label in enumerate(self.classes)}).to_numpy(dtype=np.int64, copy=True)
        scale = self.target_scale
        return ((y.to_numpy(dtype=np.float64) - scale["mean"]) / scale["std"]).astype(np.float32)

    def arrays(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """A raw piece of the table (inputs and target) -> inputs and targets."""
        from loopml_runtime.package import conform

        return self.features(conform(frame, self.inputs)), self.targets(frame[self.target])

    def _scaled(self, features: np.ndarray) -> np.ndarray:
        scale = self.feature_scale
        return (features - np.asarray(scale["mean"], np.float32)) / np.asarray(scale["std"], np.float32)


def _refuse_missing(features: np.ndarray) -> None:
    if np.isnan(features).any():
        raise ModelError("training features contain missing values the network cannot take; set "
                         "model.preprocess: auto (imputes them), or fill them in the data")  # fmt: skip
