"""XGBoost and LightGBM in the scikit-learn train stage: early stopping on a validation split of the
training rows (`train.early_stopping_rounds`, `train.val_size`), as the torch loop stops early, and
XGBoost's GPU parameter when `train.device` resolves to CUDA.

The preprocessing pipeline in front of the booster is fitted on the same rows the booster sees, so
the validation rows reach it transformed exactly as they will be when the pipeline predicts.
"""

from __future__ import annotations

from typing import Any


def library(estimator: object) -> str | None:
    """ "xgboost" or "lightgbm" for their scikit-learn estimators, else None."""
    root = type(estimator).__module__.split(".")[0]
    return root if root in ("xgboost", "lightgbm") else None


def use_device(final, booster: str, requested: str) -> str:
    """XGBoost trains on the GPU when train.device resolves to CUDA and its params chose no device.
    LightGBM's PyPI wheel has no CUDA build, so it trains on CPU (set device_type in params to
    use a GPU build). Returns the device set."""
    from loopml.train.device import choose_device

    if booster != "xgboost" or final.get_params().get("device") is not None:
        return "cpu"
    device = choose_device(requested)
    if device.type != "cuda":
        return "cpu"
    final.set_params(device="cuda" if device.index is None else f"cuda:{device.index}")
    return "cuda"


def release_device(final, booster: str, device: str) -> None:
    """The packaged model predicts on CPU: serving and batch inference hand it host memory."""
    if booster == "xgboost" and device == "cuda":
        final.set_params(device="cpu")


def fit(estimator, final, booster: str, X, y, train, task: str) -> dict[str, Any]:
    """Fit `estimator` (the booster `final`, or a pipeline ending in it); with early stopping, on
    all but `train.val_size` of the rows. What the stopping did, or {} when it is off."""
    rounds = train.early_stopping_rounds
    if not rounds:
        estimator.fit(X, y)
        return {}
    from sklearn.base import clone
    from sklearn.model_selection import train_test_split

    stratify = y if task == "classification" and y.value_counts().min() >= 2 else None
    X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=train.val_size, random_state=train.seed,
                                                  stratify=stratify)  # fmt: skip
    prefix, X_eval = "", X_val
    if estimator is not final:  # a Pipeline: the booster sees the rows transformed
        steps = estimator.steps
        prep = clone(steps[0][1]).fit(X_fit, y_fit)
        prefix, X_eval = f"{steps[-1][0]}__", prep.transform(X_val)
    if booster == "xgboost":
        if final.get_params().get("early_stopping_rounds") is None:
            final.set_params(early_stopping_rounds=rounds)
        params: dict[str, Any] = {"eval_set": [(X_eval, y_val)], "verbose": False}
    else:
        import lightgbm

        params = {"eval_set": [(X_eval, y_val)], "callbacks": [lightgbm.early_stopping(rounds, verbose=False)]}
    estimator.fit(X_fit, y_fit, **{prefix + key: value for key, value in params.items()})
    total = int(final.get_params().get("n_estimators") or 100)
    # XGBoost counts the best iteration from 0, LightGBM from 1
    best = int(final.best_iteration) + 1 if booster == "xgboost" else int(final.best_iteration_ or total)
    return {"best_rounds": best, "rounds": total, "stopped_early": best < total}
