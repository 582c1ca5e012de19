"""Variants built from real packages (a small torch MLP, scikit-learn and XGBoost models on digits):
each loads through Predictor and answers like the original; what cannot be built says why."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression

from loopml.config import OptimizeConfig
from loopml.optimize.variants import TrainingRows, VariantFailed, build, expand
from loopml_runtime import Input, Predictor, save_package

MODEL_FILE = """
from torch import nn


def build(n_features, n_outputs, hidden=128):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_outputs))
"""


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    X = pd.DataFrame(data.data, columns=[f"pixel_{i}" for i in range(64)])
    return X, data.target


@pytest.fixture(scope="module")
def mlp_package(tmp_path_factory, digits) -> Path:
    """A 64-128-128-10 MLP fitted for a few epochs, packaged as the train stage packages it."""
    X, y = digits
    root = tmp_path_factory.mktemp("mlp")
    (root / "model.py").write_text(MODEL_FILE)
    mean, std = X.mean().to_numpy(), X.std().to_numpy() + 1e-6
    torch.manual_seed(0)
    from loopml_runtime.predictor import import_user_file

    model = import_user_file(root / "model.py").build(64, 10)
    x = torch.tensor(((X - mean) / std).to_numpy(), dtype=torch.float32)
    target = torch.tensor(y)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(15):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), target[batch]).backward()
            optimizer.step()
    meta = {
        "kind": "torch",
        "task": "classification",
        "inputs": [Input(c, "number", "float64") for c in X.columns],
        "target": "label",
        "classes": list(range(10)),
        "factory": "model.py:build",
        "factory_kwargs": {"n_features": 64, "n_outputs": 10},
        "feature_scale": {"mean": mean.tolist(), "std": std.tolist()},
        "target_scale": None,
    }
    save_package(root / "package", meta, model=model.eval(), factory_file=root / "model.py")
    return root / "package"


def _built(name, package, digits, tmp_path, **settings):
    X, y = digits
    base = Predictor(package)
    built = build(name, base, tmp_path, OptimizeConfig(finetune_epochs=2, **settings), TrainingRows(X, y))
    return base, Predictor(built.package), built


@pytest.mark.parametrize("name", ["onnx", "onnx_int8", "onnx_int8_static", "torch_int8", "prune_50", "svd"])
def test_torch_variants_answer_like_the_original(name, mlp_package, digits, tmp_path):
    X, y = digits
    base, variant, built = _built(name, mlp_package, digits, tmp_path)
    assert variant.variant == name and variant.runtime == built.runtime
    expected, _ = base.infer(X)
    for rows in (X.head(1), X.head(64), X):  # batch 1 and 64: the dynamic batch dimension
        labels, proba = variant.infer(rows)
        assert len(labels) == len(rows) and proba.shape == (len(rows), 10)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    labels, _ = variant.infer(X)
    agreement = np.mean(labels == expected)
    # exact formats agree on every row; int8 and the smaller (fine-tuned) networks on nearly every one
    assert agreement >= (0.999 if name == "onnx" else 0.9), agreement
    assert np.mean(labels == y) >= 0.9
    matrix = variant.infer_matrix(X.to_numpy())[0]  # the serving fast path answers the same
    assert list(matrix) == list(labels)


def test_pruning_and_svd_shrink_the_network(mlp_package, digits, tmp_path):
    _, pruned, built = _built("prune_50", mlp_package, digits, tmp_path / "p")
    before, after = built.details["parameters"].split(" -> ")
    assert int(after.replace(",", "")) < 0.5 * int(before.replace(",", ""))
    _, factorized, built = _built("svd", mlp_package, digits, tmp_path / "s", svd_energy=0.5)
    assert "->r" in built.details["factorized"]


def test_refusals_name_the_reason(mlp_package, digits, tmp_path):
    cases = {"quantum": "unknown", "prune_150": "must lie in (0, 1)", "fp16": "CUDA"}
    if torch.cuda.is_available():
        cases["fp16"] = "not built yet"
    for name, reason in cases.items():
        with pytest.raises(VariantFailed, match=reason.replace("(", r"\(").replace(")", r"\)")):
            _built(name, mlp_package, digits, tmp_path / name, prune_ratios=[1.5])
    with pytest.raises(VariantFailed, match="svd_energy must lie in"):
        _built("svd", mlp_package, digits, tmp_path / "svd", svd_energy=1.5)
    with pytest.raises(VariantFailed, match="calibration needs at least 16"):
        _built("onnx_int8_static", mlp_package, digits, tmp_path / "cal", calibration_rows=4)


def test_names_expand_per_ratio():
    settings = OptimizeConfig(prune_ratios=[0.25, 0.5])
    assert expand("auto", "torch", settings) == ["onnx", "onnx_int8", "torch_int8"]
    assert expand(["onnx", "prune", "prune"], "torch", settings) == ["onnx", "prune_25", "prune_50"]
    assert expand("auto", "sklearn", settings) == ["onnx"]


def _sklearn_package(tmp_path: Path, estimator, X: pd.DataFrame, y, task="classification", **meta) -> Path:
    estimator.fit(X, y)
    classes = sorted(set(y.tolist())) if task == "classification" else None
    save_package(tmp_path / "package", {"kind": "sklearn", "task": task, "inputs": [Input.of(c, X[c]) for c in X],
                                        "target": "y", "classes": classes, **meta}, model=estimator)  # fmt: skip
    return tmp_path / "package"


def test_random_forest_through_skl2onnx(digits, tmp_path):
    X, y = digits
    package = _sklearn_package(tmp_path, RandomForestClassifier(n_estimators=50, random_state=0), X, y)
    base, variant, built = _built("onnx", package, digits, tmp_path / "v")
    assert built.details["exporter"] == "skl2onnx" and variant.runtime == "onnxruntime"
    expected, expected_proba = base.infer(X)
    labels, proba = variant.infer(X)
    assert np.mean(labels == expected) >= 0.995
    assert np.abs(proba - expected_proba).max() < 1e-4
    assert list(variant.infer_matrix(X.to_numpy())[0]) == list(labels)


def test_xgboost_through_onnxmltools(digits, tmp_path):
    from xgboost import XGBClassifier

    X, y = digits
    package = _sklearn_package(tmp_path, XGBClassifier(n_estimators=20, max_depth=3), X, y, label_encoded=True)
    base, variant, _ = _built("onnx", package, digits, tmp_path / "v")
    assert np.mean(variant.predict(X) == base.predict(X)) >= 0.995


def test_regression_through_skl2onnx(digits, tmp_path):
    X, y = digits
    package = _sklearn_package(tmp_path, LinearRegression(), X, y.astype(float), task="regression")
    base, variant, _ = _built("onnx", package, digits, tmp_path / "v")
    np.testing.assert_allclose(variant.predict(X), base.predict(X), atol=1e-3)


def test_text_columns_are_not_convertible(tmp_path):
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = pd.DataFrame({"city": ["a", "b", "c", "a"] * 10, "n": np.arange(40.0)})
    y = np.array([0, 1] * 20)
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
                         RandomForestClassifier(n_estimators=5))  # fmt: skip
    package = _sklearn_package(tmp_path, pipe, X, y)
    with pytest.raises(VariantFailed, match="not convertible: the model takes text"):
        _built("onnx", package, (X, y), tmp_path / "v")
    with pytest.raises(VariantFailed, match="a torch variant"):
        _built("onnx_int8", package, (X, y), tmp_path / "w")


def test_a_missing_compression_tool_names_the_extra(digits, tmp_path, monkeypatch):
    X, y = digits
    package = _sklearn_package(tmp_path, RandomForestClassifier(n_estimators=5, random_state=0), X, y)
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # as if loopml were installed without [optimize]
    with pytest.raises(VariantFailed, match=r"needs the skl2onnx package: pip install 'loopml\[optimize\]'"):
        _built("onnx", package, digits, tmp_path / "v")


DATA_DEPENDENT = """
import torch
from torch import nn


class Branchy(nn.Module):
    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.a, self.b = nn.Linear(n_features, n_outputs), nn.Linear(n_features, n_outputs)

    def forward(self, x):
        if x.sum() > 0:  # control flow on the data: torch.export cannot trace it
            return self.a(x)
        return self.b(x)


def build(n_features, n_outputs):
    return Branchy(n_features, n_outputs)
"""


def _torch_package(root: Path, source: str, X: pd.DataFrame, task: str, outputs: int, **meta) -> Path:
    from loopml_runtime.predictor import import_user_file

    (root / "model.py").write_text(source)
    torch.manual_seed(0)
    model = import_user_file(root / "model.py").build(X.shape[1], outputs)
    scale = {"mean": X.mean().tolist(), "std": (X.std() + 1e-6).tolist()}
    save_package(root / "package", {"kind": "torch", "task": task, "inputs": [Input.of(c, X[c]) for c in X],
                                    "target": "y", "factory": "model.py:build",
                                    "factory_kwargs": {"n_features": X.shape[1], "n_outputs": outputs},
                                    "feature_scale": scale, **meta},
                 model=model.eval(), factory_file=root / "model.py")  # fmt: skip
    return root / "package"


def test_an_export_that_fails_is_this_variants_reason(digits, tmp_path):
    X, y = digits
    package = _torch_package(tmp_path, DATA_DEPENDENT, X, "classification", 10, classes=list(range(10)),
                             target_scale=None)  # fmt: skip
    with pytest.raises(VariantFailed, match="ONNX export failed"):
        _built("onnx", package, digits, tmp_path / "v")


def test_a_regression_network_keeps_its_target_scale(digits, tmp_path):
    X, y = digits
    target = y.astype(float) * 10 + 5
    package = _torch_package(tmp_path, MODEL_FILE, X, "regression", 1,
                             target_scale={"mean": float(target.mean()), "std": float(target.std())})  # fmt: skip
    for name in ("onnx", "svd"):
        base, variant, _ = _built(name, package, (X, target), tmp_path / name, svd_energy=0.5)
        expected, got = base.predict(X), variant.predict(X)
        assert got.shape == expected.shape and abs(got.mean() - target.mean()) < 5 * target.std()
        if name == "onnx":  # the same network: the same numbers
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
