"""The column preprocessing that becomes part of a model: raw columns (numbers, booleans, text
categories, dates, missing values) -> the numbers an estimator or a network takes.

Built from the column roles; fitted on the training rows only; saved inside the package, so the
served model takes the raw columns of the user's file. Gradient-boosted trees get ordinal category
codes (declared categorical to HistGradientBoosting) and keep their native handling of missing
values; everything else gets imputation, one-hot categories and (optionally) standard scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopml_runtime import Input

MAX_ONE_HOT = 30  # categories kept per column for one-hot encoding; the rare rest share one column
MIN_FREQUENCY = 5  # rows a category needs to get its own column (or code)
MAX_ORDINAL = 250  # HistGradientBoosting's categorical limit is 255 bins


@dataclass
class Preprocessing:
    transformer: object | None  # a fitted-to-be ColumnTransformer, or None: the columns go in as they are
    categorical_indices: list[int]  # output columns holding category codes (for HistGradientBoosting)
    accepts_missing: bool  # whether the whole model takes missing values


def native_trees(estimator: object) -> bool:
    """Estimators that split on NaN themselves and take category codes."""
    name = type(estimator).__name__
    return name.startswith("HistGradientBoosting") or name.startswith(("XGB", "LGBM"))


def build(inputs: list[Input], X_train, estimator: object | None, standardize: bool) -> Preprocessing:
    """The preprocessing for `inputs` (fitted later on `X_train`'s rows) in front of `estimator`
    (None: a torch network, which standardizes its inputs itself)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    from loopml_runtime.preprocess import DatetimeFeatures

    trees = estimator is not None and native_trees(estimator)
    by_kind: dict[str, list[str]] = {"string": [], "number": [], "bool": [], "datetime": []}
    for spec in inputs:
        by_kind[spec.kind].append(spec.name)
    if not (by_kind["string"] or by_kind["datetime"] or by_kind["bool"]):
        return _numbers_only(X_train, estimator, trees, standardize)
    steps = []
    categorical_indices: list[int] = []
    if by_kind["string"]:
        if trees:
            encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                     encoded_missing_value=np.nan, min_frequency=MIN_FREQUENCY,
                                     max_categories=MAX_ORDINAL)  # fmt: skip
            steps.append(("categories", encoder, by_kind["string"]))
            categorical_indices = list(range(len(by_kind["string"])))  # first in the output
        else:
            encoder = make_pipeline(
                SimpleImputer(strategy="constant", fill_value="(missing)", missing_values=None),
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_FREQUENCY,
                              max_categories=MAX_ONE_HOT, sparse_output=False),
            )  # fmt: skip
            steps.append(("categories", encoder, by_kind["string"]))
    numbers = by_kind["number"] + by_kind["bool"]
    if numbers:
        if trees:
            steps.append(("numbers", "passthrough", numbers))
        else:
            parts = [SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)]
            if standardize and estimator is not None:
                parts.append(StandardScaler())
            steps.append(("numbers", make_pipeline(*parts), numbers))
    if by_kind["datetime"]:
        if trees:
            steps.append(("dates", DatetimeFeatures(), by_kind["datetime"]))
        else:
            parts = [DatetimeFeatures(), SimpleImputer(strategy="median", keep_empty_features=True)]
            if standardize and estimator is not None:
                parts.append(StandardScaler())
            steps.append(("dates", make_pipeline(*parts), by_kind["datetime"]))
    transformer = ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False)
    return Preprocessing(transformer, categorical_indices, True)


def _numbers_only(X_train, estimator, trees: bool, standardize: bool) -> Preprocessing:
    """Numbers only: array-friendly steps (no column selection), so serving can skip the DataFrame."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if trees:
        return Preprocessing(None, [], True)
    has_missing = bool(X_train.isna().any().any())
    parts = [SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)] if has_missing else []
    if standardize and estimator is not None:
        parts.append(StandardScaler())
    return Preprocessing(make_pipeline(*parts) if parts else None, [], has_missing)


def attach(estimator: object, prep: Preprocessing):
    """The estimator behind its preprocessing, as one scikit-learn Pipeline (what gets pickled)."""
    from sklearn.pipeline import Pipeline

    if prep.transformer is None:
        return estimator
    if prep.categorical_indices and type(estimator).__name__.startswith("HistGradientBoosting"):
        # declared categorical: splits on category sets, not on the codes' arbitrary order
        estimator.set_params(categorical_features=prep.categorical_indices)
    return Pipeline([("preprocess", prep.transformer), ("model", estimator)])
