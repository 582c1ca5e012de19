"""The dataset a project trains and evaluates on: raw feature columns, target, one deterministic split.

Every stage that needs data calls `load_dataset`, so train and evaluate always agree on which
rows are held out (stratified for classification, seeded by `data.seed`) and on what each column
is for (`roles`). The data is the raw table plus any labelled live traffic the loop has added
under `data.traffic`; neither is ever written here. Features stay raw (text, dates, missing
values): the preprocessing is part of the model, so a served model takes the same columns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from loopml.data import roles as column_roles
from loopml.data.io import CsvOptions, file_digest, read_table
from loopml.data.schema import missing_column
from loopml.errors import DataError
from loopml.project import Project
from loopml_runtime import Input, InputError
from loopml_runtime.package import conform

if TYPE_CHECKING:
    from loopml.data.stream import TableStream

MIN_ROWS = 10


@dataclass
class Dataset:
    X_train: pd.DataFrame  # conformed raw feature columns (training types; missing values kept)
    y_train: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series
    inputs: list[Input]  # the raw columns the model takes, with their kinds and roles
    classes: list | None  # sorted class labels for classification, None for regression
    roles: dict[str, str]  # every column but the target -> its role (excluded ones included)
    # A streamed table (data larger than memory): X_train/y_train are then a uniform sample of the
    # training rows, and the stream reads them all, piece by piece
    stream: TableStream | None = None
    target_range: tuple[float, float] | None = None  # regression: the whole training target's range
    train_labels: dict | None = None  # classification: rows per label among all the training rows

    @property
    def train_rows(self) -> int:
        return self.stream.count("train") if self.stream is not None else len(self.X_train)

    @property
    def features(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0


def load_dataset(project: Project, with_test: bool = True) -> Dataset:
    """The project's data, split. A streamed table (`loopml.data.stream`) is not read whole: the
    training rows are sampled, and the test rows read only `with_test` (training never needs them)."""
    from sklearn.model_selection import train_test_split

    from loopml.data.stream import streams

    if streams(project):
        return _load_streamed(project, with_test)
    cfg = project.config
    frame = read_data(project)
    roles, inputs, y = _columns(project, frame)
    classes, stratify = None, None
    if cfg.task == "classification":
        classes = _classes(project, y.unique().tolist())
        stratify = y if y.value_counts().min() >= 2 else None
    if len(frame) < MIN_ROWS:
        raise DataError(f"{cfg.data.path}: only {len(frame)} rows; need at least {MIN_ROWS} to split train/test")
    X = _conformed(project, frame, inputs)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=cfg.data.test_size,
                                                        random_state=cfg.data.seed, stratify=stratify)  # fmt: skip
    return Dataset(X_train, y_train, X_test, y_test, inputs, classes, roles)


def _load_streamed(project: Project, with_test: bool) -> Dataset:
    """A streamed table: roles and inputs from a uniform sample of the training rows, the classes
    (or the target's range) from one pass over the target column, the test rows if asked."""
    from loopml.data.stream import TEST, TRAIN, TableStream

    cfg = project.config
    target = cfg.data.target
    whole = TableStream.of(project)
    if whole.count(TRAIN) < MIN_ROWS or whole.count(TEST) < 1:
        raise DataError(f"{cfg.data.path}: only {whole.rows} rows; need at least {MIN_ROWS} to split train/test")
    sample = whole.sample(TRAIN)
    roles, inputs, y_sample = _columns(project, sample)
    labels: Counter = Counter()
    low, high, missing = float("inf"), float("-inf"), 0
    for frame in whole.reading([target]).frames(TRAIN):
        y = frame[target]
        missing += int(y.isna().sum())
        if cfg.task == "classification":
            labels.update(y.value_counts().to_dict())
        elif len(y.dropna()):
            low, high = min(low, float(y.min())), max(high, float(y.max()))
    if missing:
        raise DataError(f"{cfg.data.path}: target {target!r} has {missing} missing value(s) among the training rows; "
                        "drop those rows or fill them in")  # fmt: skip
    classes = _classes(project, list(labels)) if cfg.task == "classification" else None
    stream = whole.reading([*(i.name for i in inputs), target])
    X_train = _conformed(project, sample, inputs)
    if with_test:
        test = pd.concat(list(stream.frames(TEST)), ignore_index=True)
        X_test, y_test = _conformed(project, test, inputs), test[target]
    else:
        X_test, y_test = X_train.iloc[:0], y_sample.iloc[:0]
    if classes is not None:
        return Dataset(X_train, y_sample, X_test, y_test, inputs, classes, roles, stream, train_labels=dict(labels))
    return Dataset(X_train, y_sample, X_test, y_test, inputs, classes, roles, stream, target_range=(low, high))


def _columns(project: Project, frame: pd.DataFrame) -> tuple[dict[str, str], list[Input], pd.Series]:
    """The roles, the model's inputs and the target of `frame`, checked."""
    cfg = project.config
    target = cfg.data.target
    if target not in frame.columns:
        raise DataError(f"{cfg.data.path}: " + missing_column(target, frame, "data.target"))
    roles = project_roles(project, frame)
    inputs = text_input(cfg.data.path, roles) if cfg.model.type == "text" else inputs_for(frame, roles)
    if not inputs:
        excluded = ", ".join(f"{c} ({r})" for c, r in list(roles.items())[:8])
        raise DataError(f"{cfg.data.path}: no feature columns to learn from besides the target {target!r} "
                        f"({excluded}); change data.columns or data.exclude in loopml.yaml")  # fmt: skip
    y = frame[target]
    if y.isna().any():
        raise DataError(f"{cfg.data.path}: target {target!r} has {int(y.isna().sum())} missing value(s); drop those "
                        "rows or fill them in")  # fmt: skip
    if cfg.task != "classification" and (not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y)):
        raise DataError(f"{cfg.data.path}: a regression target must be numeric; {target!r} is {y.dtype} "
                        "(set task: classification to predict its values as classes)")  # fmt: skip
    return roles, inputs, y


def _classes(project: Project, labels: list) -> list:
    classes = sorted(labels, key=_label_order)
    if len(classes) < 2:
        raise DataError(f"{project.config.data.path}: target {project.config.data.target!r} has a single class "
                        f"{classes}; need two or more")  # fmt: skip
    return classes


def _conformed(project: Project, frame: pd.DataFrame, inputs: list[Input]) -> pd.DataFrame:
    try:
        return conform(frame, inputs)
    except InputError as exc:
        raise DataError(f"{project.config.data.path}: {exc}; fix the data or its role in data.columns") from None


def project_roles(project: Project, frame: pd.DataFrame) -> dict[str, str]:
    """Each column's role: `data.columns` where the user (or the first validation) wrote it,
    inferred for the rest; `data.exclude` drops columns."""
    cfg = project.config.data
    inferred = column_roles.infer_roles(frame, cfg.target)
    return column_roles.effective(inferred, cfg.columns, cfg.exclude)


def inputs_for(frame: pd.DataFrame, roles: dict[str, str]) -> list[Input]:
    """The model's raw inputs: the feature columns, each with the kind its role makes of it."""
    inputs = []
    for name in column_roles.features(roles):
        role = roles[name]
        series = frame[name]
        if role == column_roles.DATETIME:
            inputs.append(Input(name, "datetime", None if pd.api.types.is_datetime64_any_dtype(series) else "ISO8601",
                                role))  # fmt: skip
        elif role == column_roles.CATEGORICAL:
            inputs.append(Input(name, "string", None, role))
        elif role == column_roles.BOOLEAN:
            inputs.append(Input(name, "bool", None, role))
        else:
            found = Input.of(name, series, role)
            inputs.append(found if found.kind == "number" else Input(name, "number", "float64", role))
    return inputs


def text_input(path: str, roles: dict[str, str]) -> list[Input]:
    """A text model's one input: the column whose role is text (the other columns are not used)."""
    texts = [name for name, role in roles.items() if role == column_roles.TEXT]
    if len(texts) != 1:
        shown = ", ".join(f"{c} ({r})" for c, r in list(roles.items())[:8])
        raise DataError(f"{path}: a text model learns from one text column; found {len(texts)} ({shown}). Set "
                        "data.columns.<name>: text for the column to learn from, another role for others")  # fmt: skip
    return [Input(texts[0], "string", None, column_roles.TEXT)]


def _label_order(label):
    """Sort labels of mixed types without failing (numbers first, then text)."""
    return (0, label, "") if isinstance(label, int | float) and not isinstance(label, bool) else (1, 0, str(label))


def traffic_files(project: Project) -> list:
    folder = project.traffic_dir
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def read_data(project: Project) -> pd.DataFrame:
    """The raw table, then the labelled traffic rows."""
    frame = read_table(project.data_path, options=CsvOptions.of(project.config.data))
    traffic = read_traffic(project, frame)
    return frame if traffic is None else pd.concat([frame, traffic], ignore_index=True)


def read_traffic(project: Project, raw: pd.DataFrame) -> pd.DataFrame | None:
    """The labelled traffic rows in the raw table's columns (lossless casts to its dtypes), or None.
    Columns the traffic lacks (an excluded ID, say) are missing values."""
    files = traffic_files(project)
    if not files:
        return None
    extra = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    target = project.config.data.target
    features = [c for c in raw.columns if c != target]
    if target not in extra.columns or not any(c in extra.columns for c in features):
        raise DataError(
            f"{project.config.data.traffic}: traffic files lack the columns of {project.config.data.path}; they "
            "were written for another dataset: move them out of the folder and run `dvc add` on it again"
        )
    extra = extra.reindex(columns=list(raw.columns))
    for column in raw.columns:
        kind = raw[column].dtype
        values = extra[column]
        if pd.api.types.is_integer_dtype(kind) and values.notna().all() and pd.api.types.is_numeric_dtype(values) \
                and (values % 1 == 0).all():  # fmt: skip
            extra[column] = values.astype(kind)
    return extra


def data_digest(project: Project) -> str:
    """A digest of everything `read_data` reads: the raw file's (a remote file's content checksum),
    combined with the traffic files'."""
    import hashlib

    raw = file_digest(project.data_path)
    files = traffic_files(project)
    if not files:
        return raw
    return hashlib.md5("".join([raw, *(file_digest(f) for f in files)]).encode()).hexdigest()
