"""The train stage: data → fitted model package, tracked in MLflow with its lineage."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np

from loopml.data.dataset import Dataset, data_digest, load_dataset, to_matrix
from loopml.errors import ModelError
from loopml.lineage import environment, git_commit, requirements
from loopml.project import Project

logger = logging.getLogger(__name__)


def train(project: Project, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Fit the configured model, package it in `outputs/model`, log the run; return the result."""
    from loopml import registry

    started = time.perf_counter()
    cfg = project.config
    data = load_dataset(project)
    digest = data_digest(project)
    fingerprint = _fingerprint(cfg, digest)
    checkpoint = project.checkpoint_dir / "last.pt"
    previous_run = _resumable_run(project, fingerprint) if resume else None

    with registry.run(project, run_id=previous_run, system_metrics=True) as run_id:
        if previous_run is None:
            registry.log_params({"task": cfg.task, "data": cfg.data.model_dump(exclude={"rules"}),
                                 "model": cfg.model.model_dump(), "train": cfg.train.model_dump()})  # fmt: skip
            train_frame = data.X_train.assign(**{cfg.data.target: data.y_train.to_numpy()})
            registry.log_dataset(train_frame, cfg.data.path, digest, cfg.data.target, "training")
        (project.state).mkdir(parents=True, exist_ok=True)
        (project.state / "train-run.json").write_text(json.dumps({"run_id": run_id, "fingerprint": fingerprint}))
        if cfg.model.type == "torch":
            details, device = _train_torch(project, data, fingerprint, checkpoint, resume, show_progress)
        else:
            details, device = _train_sklearn(project, data)
        env = environment(device)
        (project.model_dir / "environment.json").write_text(json.dumps(env, indent=2) + "\n")
        _write_reference_profile(project, data)
        commit = git_commit(project.root)
        registry.set_tags({"loopml.data_digest": digest, "loopml.git_commit": commit, "loopml.device": device,
                           "loopml.variant": "base", "loopml.stage": "train"})  # fmt: skip
        registry.log_params({"env." + k: v for k, v in env["packages"].items()})
        model_uri = registry.log_model(project.model_dir, data.X_test.head(8), requirements())

    result = {
        "stage": "train",
        "seconds": round(time.perf_counter() - started, 3),
        "figure": details.pop("figure"),
        "run_id": run_id,
        "model_uri": model_uri,
        "data_digest": digest,
        "git_commit": commit,
        "device": device,
        **details,
    }
    project.write_result("train", result)
    return result


def _train_torch(project: Project, data: Dataset, fingerprint: str, checkpoint, resume: bool,
                 show_progress: bool) -> tuple[dict[str, Any], str]:  # fmt: skip
    import torch
    from sklearn.model_selection import train_test_split

    from loopml import registry
    from loopml.system.exporter import readings_for_mlflow
    from loopml.train.device import auto_batch_size, choose_device, choose_precision, seed_everything
    from loopml.train.factory import call_factory, load_factory
    from loopml.train.loop import LoopSettings, fit
    from loopml.train.package import save_package

    cfg = project.config
    classification = cfg.task == "classification"
    X = to_matrix(data.X_train)
    if np.isnan(X).any():
        raise ModelError("training features contain missing values; impute them in the prepare stage")
    if classification:
        index = {label: i for i, label in enumerate(data.classes)}
        y = data.y_train.map(index).to_numpy(dtype=np.int64)
        target_scale = None
    else:
        raw = data.y_train.to_numpy(dtype=np.float64)
        target_scale = {"mean": float(raw.mean()), "std": float(raw.std() or 1.0)}
        y = ((raw - target_scale["mean"]) / target_scale["std"]).astype(np.float32)
    feature_scale = None
    if cfg.model.standardize:
        std = X.std(axis=0)
        feature_scale = {"mean": X.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}
        X = (X - np.asarray(feature_scale["mean"], np.float32)) / np.asarray(feature_scale["std"], np.float32)
    stratify = y if classification and np.bincount(y).min() >= 2 else None
    X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=cfg.train.val_size,
                                                  random_state=cfg.train.seed, stratify=stratify)  # fmt: skip

    factory = load_factory(cfg.model.factory, project.root)
    n_outputs = len(data.classes) if classification else 1
    factory_kwargs = {"n_features": X.shape[1], "n_outputs": n_outputs, **cfg.model.params}

    def build():
        model = call_factory(factory, cfg.model.factory, **factory_kwargs)
        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"model.factory {cfg.model.factory} returned {type(model).__name__}, not an nn.Module")
        return model

    device = choose_device(cfg.train.device)
    dtype = choose_precision(device, cfg.train.precision)
    loss_fn = torch.nn.CrossEntropyLoss() if classification else torch.nn.MSELoss()
    batch_size = cfg.train.batch_size
    if batch_size == "auto":
        batch_size = auto_batch_size(build, X.shape[1], len(X_fit), device, loss_fn,
                                     torch.long if classification else torch.float32)  # fmt: skip
    seed_everything(cfg.train.seed)
    model = build()
    _check_output_shape(model, X_fit[:2], n_outputs, cfg.model.factory)
    if not resume and checkpoint.exists():
        checkpoint.unlink()
    settings = LoopSettings(
        epochs=cfg.train.epochs, batch_size=int(batch_size), lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay, patience=cfg.train.patience, seed=cfg.train.seed,
        device=device, autocast_dtype=dtype, checkpoint=checkpoint, resume=resume, fingerprint=fingerprint,
    )  # fmt: skip

    def on_epoch(step: int, metrics: dict) -> None:
        # On a GPU, each epoch also records the DCGM-named readings `loopml gpu export` serves.
        gpu = readings_for_mlflow() if device.type == "cuda" else {}
        registry.log_metrics({**metrics, **gpu}, step=step)

    result = fit(model, X_fit, y_fit, X_val, y_val, cfg.task, settings, on_epoch=on_epoch,
                 show_progress=show_progress)  # fmt: skip
    registry.log_metrics({"samples_per_s": result.samples_per_s, "best_epoch": result.best_epoch})
    save_package(
        project.model_dir,
        {
            "kind": "torch", "task": cfg.task, "features": data.features, "target": cfg.data.target,
            "feature_dtypes": {c: str(t) for c, t in data.X_train.dtypes.items()},
            "classes": data.classes, "factory": cfg.model.factory, "factory_kwargs": factory_kwargs,
            "feature_scale": feature_scale, "target_scale": target_scale,
            "precision": str(dtype).removeprefix("torch.") if dtype else "fp32",
            "trained_on": str(device),
        },
        model=model,
        factory_file=(project.root / cfg.model.factory.rsplit(":", 1)[0]).resolve(),
        extra_files={"schema.yaml": project.schema_path},
    )  # fmt: skip
    last = result.history[-1] if result.history else {}
    figure = (f"{result.epochs_run} epochs on {device}"
              + (f", val acc {last['val_accuracy']:.3f}" if "val_accuracy" in last else
                 f", val loss {last.get('val_loss', float('nan')):.4f}"))  # fmt: skip
    return {
        "figure": figure,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from,
        "batch_size": int(batch_size),
        "precision": str(dtype).removeprefix("torch.") if dtype else "fp32",
        "samples_per_s": round(result.samples_per_s, 1),
        "history": result.history,
    }, str(device)


def _train_sklearn(project: Project, data: Dataset) -> tuple[dict[str, Any], str]:
    from loopml import registry
    from loopml.train.device import seed_everything
    from loopml.train.factory import build_estimator
    from loopml.train.package import save_package

    cfg = project.config
    seed_everything(cfg.train.seed)
    estimator = build_estimator(cfg.model, project.root)
    started = time.perf_counter()
    try:
        estimator.fit(data.X_train, data.y_train)
    except Exception as exc:
        raise ModelError(f"fitting {type(estimator).__name__} failed: {type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - started
    train_score = float(estimator.score(data.X_train, data.y_train))
    registry.log_metrics({"train_score": train_score, "fit_seconds": seconds})
    save_package(
        project.model_dir,
        {"kind": "sklearn", "task": cfg.task, "features": data.features, "target": cfg.data.target,
         "feature_dtypes": {c: str(t) for c, t in data.X_train.dtypes.items()},
         "classes": data.classes, "estimator": cfg.model.estimator or cfg.model.factory, "trained_on": "cpu"},
        model=estimator,
        extra_files={"schema.yaml": project.schema_path},
    )  # fmt: skip
    name = type(estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator).__name__
    return {"figure": f"{name}, train score {train_score:.3f}", "fit_seconds": round(seconds, 3)}, "cpu"


def _write_reference_profile(project: Project, data: Dataset) -> None:
    """The training inputs and the model's own predictions on them, binned once: what live
    traffic is compared with for drift. It travels inside the package, so with every version."""
    from loopml.data.profile import PREDICTION_COLUMN, Profile
    from loopml.train.package import Predictor

    predictions = Predictor(project.model_dir).predict(data.X_train)
    reference = data.X_train.assign(**{PREDICTION_COLUMN: predictions})
    (project.model_dir / "reference_profile.json").write_text(json.dumps(Profile.fit(reference).to_dict()))


def _check_output_shape(model, sample: np.ndarray, n_outputs: int, spec: str) -> None:
    import torch

    model.eval()
    with torch.no_grad():
        try:
            out = model(torch.as_tensor(sample))
        except Exception as exc:
            raise ModelError(f"model from {spec} fails on a batch of shape {tuple(sample.shape)}: {exc}") from exc
    if tuple(out.shape) != (len(sample), n_outputs):
        raise ModelError(
            f"model from {spec} returns shape {tuple(out.shape)} for a batch of {len(sample)}; "
            f"expected ({len(sample)}, {n_outputs}): one output per class (or 1 for regression)"
        )


def _fingerprint(cfg, digest: str) -> str:
    payload = json.dumps([cfg.data.model_dump(), cfg.model.model_dump(), cfg.train.model_dump(), digest],
                         sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _resumable_run(project: Project, fingerprint: str) -> str | None:
    """The MLflow run a killed training left behind, if it trained the same thing."""
    marker = project.state / "train-run.json"
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    return info["run_id"] if info.get("fingerprint") == fingerprint else None
