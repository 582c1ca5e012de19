"""Column transformers that travel inside models (pickled by reference to this module, which every
logged model carries): what scikit-learn lacks for raw tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class DatetimeFeatures(TransformerMixin, BaseEstimator):
    """Dates -> numbers a model can split on: year, month, day, weekday, hour (when times vary) and
    days since 1970 (the trend). Missing dates stay missing (NaN)."""

    def fit(self, X, y=None):
        frame = _frame(X)
        self.columns_ = list(frame.columns)
        self.with_hour_ = {c: bool((frame[c].dt.hour.fillna(0) != 0).any()) for c in self.columns_}
        self.n_features_in_ = len(self.columns_)
        return self

    def transform(self, X):
        frame = _frame(X)
        blocks = []
        for column in self.columns_:
            values = pd.to_datetime(frame[column], errors="coerce")
            parts = [values.dt.year, values.dt.month, values.dt.day, values.dt.weekday]
            if self.with_hour_[column]:
                parts.append(values.dt.hour)
            epoch = values.astype("int64", copy=False).where(values.notna()) / 86_400e9
            parts.append(epoch)
            blocks.append(np.column_stack([np.asarray(p, dtype=np.float64) for p in parts]))
        return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))

    def get_feature_names_out(self, input_features=None):
        names = []
        for column in self.columns_:
            parts = ["year", "month", "day", "weekday"] + (["hour"] if self.with_hour_[column] else []) + ["days"]
            names += [f"{column}_{p}" for p in parts]
        return np.asarray(names, dtype=object)


def _frame(X) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
