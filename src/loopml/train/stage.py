"""The train stage: data -> fitted model package (preprocessing inside), tracked in MLflow with its lineage.

Under DDP (several torchrun workers, `loopml.train.distributed`) every rank prepares the same data
and trains its shard; rank 0 alone opens the MLflow run, logs, checkpoints and packages, so a
training is one run and one package whatever the number of processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from typing import Any

import numpy as np

from loopml.contracts import Tag, TrainResult, plain
from loopml.data.dataset import Dataset, data_digest, load_dataset
from loopml.errors import ModelError
from loopml.fileio import write_text_atomic
from loopml.lineage import environment, git_commit, requirements
from loopml.project import Project

logger = logging.getLogger(__name__)


def train(project: Project, resume: bool = False, show_progress: bool = True) -> TrainResult | None:
    """Fit the configured model, package it in `outputs/model`, log the run; return the result.
    `resume` continues a killed torch training from its last checkpoint (an elastic restart under
    torchrun always does). Under DDP, ranks other than 0 return None: rank 0 owns the result."""
    from loopml.registry import Registry
    from loopml.train.distributed import world_from_env

    started = time.perf_counter()
    cfg = project.config
    world = world_from_env()
    if world.distributed and cfg.model.type != "torch":
        what = "a text model" if cfg.model.type == "text" else f"{cfg.model.estimator or cfg.model.factory}, a " \
            "scikit-learn model,"  # fmt: skip
        raise ModelError(f"train.distributed runs torch models; {what} trains in one process: set "
                         "train.distributed.nproc_per_node: 1")  # fmt: skip
    resume = resume or world.restart > 0
    data = load_dataset(project, with_test=False)  # a streamed table's test rows are evaluate's
    digest = data_digest(project)
    fingerprint = _fingerprint(cfg, digest)
    checkpoint = project.checkpoint_dir / "last.pt"
    registry = Registry.of(project) if world.is_main else None
    previous_run = _resumable_run(project, fingerprint, registry) if resume and world.is_main else None
    opened = registry.run(run_id=previous_run, name="train", system_metrics=True) if world.is_main else \
        contextlib.nullcontext(None)  # fmt: skip

    with opened as run_id:
        if not world.is_main:  # the other ranks train their shards; rank 0 logs, checkpoints and packages
            _train_torch(project, data, fingerprint, checkpoint, resume, None, show_progress)
            return None
        if previous_run is None:
            registry.log_params({"task": cfg.task, "data": cfg.data.model_dump(exclude={"rules", "columns"}),
                                 "model": cfg.model.model_dump(), "train": cfg.train.model_dump()})  # fmt: skip
            train_frame = data.X_train.assign(**{cfg.data.target: data.y_train.to_numpy()})
            registry.log_dataset(train_frame, cfg.data.path, digest, cfg.data.target, "training")
        project.state.mkdir(parents=True, exist_ok=True)
        write_text_atomic(project.state / "train-run.json", json.dumps({"run_id": run_id, "fingerprint": fingerprint}))
        if cfg.model.type == "torch":
            details, device, uses_sklearn, extra = _train_torch(project, data, fingerprint, checkpoint, resume,
                                                                registry, show_progress)  # fmt: skip
        elif cfg.model.type == "text":
            from loopml.train.text import train_text

            details, device, uses_sklearn, extra = train_text(project, data, fingerprint, checkpoint, resume,
                                                              registry, show_progress)  # fmt: skip
        else:
            details, device, uses_sklearn, extra = _train_sklearn(project, data, registry)
        env = environment(device)
        write_text_atomic(project.model_dir / "environment.json", json.dumps(env, indent=2) + "\n")
        _write_reference_profile(project, data)
        commit = git_commit(project.root)
        registry.set_tags({Tag.DATA_DIGEST: digest, Tag.GIT_COMMIT: commit, Tag.DEVICE: device,
                           Tag.VARIANT: "base", Tag.STAGE: "train"})  # fmt: skip
        registry.log_params({"env." + k: v for k, v in env["packages"].items()})
        model_uri = registry.log_model(project.model_dir, data.X_train.head(8),
                                       requirements(cfg.model.type, uses_sklearn, extra))  # fmt: skip

    result = TrainResult(seconds=round(time.perf_counter() - started, 3), run_id=run_id, model_uri=model_uri,
                         data_digest=digest, git_commit=commit, device=device, **details)  # fmt: skip
    project.write_result(result)
    return result


def _train_torch(project: Project, data: Dataset, fingerprint: str, checkpoint, resume: bool, registry,
                 show_progress: bool) -> tuple[dict[str, Any], str, bool, tuple]:  # fmt: skip
    import pandas as pd
    import torch
    from sklearn.model_selection import train_test_split

    from loopml.data.stream import VAL
    from loopml.system.exporter import readings_for_mlflow
    from loopml.train import preprocess
    from loopml.train.device import auto_batch_size, choose_device, choose_precision, peak_rss_mb, seed_everything
    from loopml.train.distributed import device_for, setup, teardown
    from loopml.train.factory import call_factory, factory_path, load_factory
    from loopml.train.features import NetworkInputs
    from loopml.train.loop import LoopSettings, TensorBatches, fit
    from loopml_runtime import save_package

    cfg = project.config
    classification = cfg.task == "classification"
    prep = preprocess.build(data.inputs, data.X_train, None, cfg.model.standardize)
    # fitted on the training rows (a streamed table: on its sample of them)
    network_inputs, X, y = NetworkInputs.fit(data.inputs, cfg.data.target, prep.transformer, data.classes,
                                             data.X_train, data.y_train, cfg.model.standardize)  # fmt: skip
    if data.stream is None:
        stratify = y if classification and np.bincount(y).min() >= 2 else None
        X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=cfg.train.val_size,
                                                      random_state=cfg.train.seed, stratify=stratify)  # fmt: skip
    else:  # the validation rows are capped (stream.VAL_ROWS): they are held on the device
        X_val, y_val = network_inputs.arrays(pd.concat(list(data.stream.frames(VAL)), ignore_index=True))
        X_fit = X

    factory = load_factory(cfg.model.factory, project.root, cfg.model.allow_external_code)
    n_outputs = len(data.classes) if classification else 1
    # the vectorized width: what the preprocessing makes of the raw columns
    factory_kwargs = {"n_features": X.shape[1], "n_outputs": n_outputs, **cfg.model.params}

    def build():
        model = call_factory(factory, cfg.model.factory, **factory_kwargs)
        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"model.factory {cfg.model.factory} returned {type(model).__name__}, not an nn.Module")
        return model

    device = choose_device(cfg.train.device)
    world = setup(cfg.train.distributed, device)
    device = device_for(world, device)
    dtype = choose_precision(device, cfg.train.precision)
    loss_fn = torch.nn.CrossEntropyLoss() if classification else torch.nn.MSELoss()
    batch_size = cfg.train.batch_size
    if batch_size == "auto":
        rows = data.stream.count("fit") if data.stream is not None else len(X_fit)
        batch_size = auto_batch_size(build, X.shape[1], rows, device, loss_fn,
                                     torch.long if classification else torch.float32)  # fmt: skip
    seed_everything(cfg.train.seed)
    model = build()
    _check_output_shape(model, X_fit[:2], n_outputs, cfg.model.factory)
    if not resume and checkpoint.exists() and world.is_main:
        checkpoint.unlink()
    world.barrier()  # no rank looks for a checkpoint rank 0 is removing
    # batch_size is per process: the global batch is batch_size x world size (the linear scaling
    # rule for the learning rate is opt-in: train.distributed.scale_lr)
    lr = cfg.train.lr * world.size if cfg.train.distributed.scale_lr else cfg.train.lr
    settings = LoopSettings(
        epochs=cfg.train.epochs, batch_size=int(batch_size), lr=lr,
        weight_decay=cfg.train.weight_decay, patience=cfg.train.patience, seed=cfg.train.seed,
        device=device, autocast_dtype=dtype, checkpoint=checkpoint, resume=resume, fingerprint=fingerprint,
        world=world,
    )  # fmt: skip

    def on_epoch(step: int, metrics: dict) -> None:
        # On a GPU, each epoch also records the DCGM-named readings `loopml gpu export` serves.
        gpu = readings_for_mlflow() if device.type == "cuda" else {}
        registry.log_metrics({**metrics, **gpu}, step=step)

    if data.stream is None:
        batches = TensorBatches(X_fit, y_fit, int(batch_size), world, device,
                                torch.long if classification else torch.float32)  # fmt: skip
    else:
        from loopml.train.streaming import StreamBatches

        batches = StreamBatches(data.stream, network_inputs, int(batch_size), world, cfg.train.num_workers, device)
    result = fit(model, batches, X_val, y_val, cfg.task, settings, on_epoch=on_epoch,
                 show_progress=show_progress)  # fmt: skip
    per_rank = world.gather({"samples_per_s": result.rank_samples_per_s, "peak_rss_mb": peak_rss_mb()})
    teardown(world)
    if not world.is_main:
        return {}, str(device), False, ()
    registry.log_metrics({"samples_per_s": result.samples_per_s, "best_epoch": result.best_epoch})
    if world.distributed:  # each rank's own figures, tagged by rank in the metric name
        registry.log_metrics({f"rank{r}.{k}": v for r, figures in enumerate(per_rank) for k, v in figures.items()})
        registry.set_tags({"loopml.world_size": world.size, "loopml.backend": cfg.train.distributed.backend})
    precision = str(dtype).removeprefix("torch.") if dtype else "fp32"
    save_package(
        project.model_dir,
        {"kind": "torch", "task": cfg.task, "inputs": data.inputs, "target": cfg.data.target,
         "classes": data.classes, "factory": cfg.model.factory, "factory_kwargs": factory_kwargs,
         "feature_scale": network_inputs.feature_scale, "target_scale": network_inputs.target_scale,
         "precision": precision, "trained_on": str(device), "estimator": cfg.model.factory,
         "accepts_missing": prep.accepts_missing, "target_range": _target_range(data)},
        model=model,
        factory_file=factory_path(cfg.model.factory, project.root, cfg.model.allow_external_code),
        preprocessor=prep.transformer,
        extra_files={"schema.yaml": project.schema_path},
    )  # fmt: skip
    last = result.history[-1] if result.history else {}
    figure = (f"{result.epochs_run} epochs on {device}"
              + (f", val acc {last['val_accuracy']:.3f}" if "val_accuracy" in last else
                 f", val loss {last.get('val_loss', float('nan')):.4f}"))  # fmt: skip
    details = {"figure": figure, "estimator": cfg.model.factory, "params": cfg.model.params,
               "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "stopped_early": result.stopped_early, "resumed_from_epoch": result.resumed_from,
               "batch_size": int(batch_size), "precision": precision,
               "samples_per_s": round(result.samples_per_s, 1), "history": result.history,
               "world_size": world.size}  # fmt: skip
    return details, str(device), prep.transformer is not None, ()


def _train_sklearn(project: Project, data: Dataset, registry) -> tuple[dict[str, Any], str, bool, tuple]:
    from loopml.train import boosting, preprocess
    from loopml.train.device import seed_everything
    from loopml.train.factory import build_estimator, distribution_of, factory_path
    from loopml_runtime import save_package

    cfg = project.config
    estimator = build_estimator(cfg.model, project.root)
    seed_everything(cfg.train.seed)  # after the estimator's module is loaded: torch is seeded if it uses torch
    final = estimator
    if cfg.model.preprocess == "auto":
        prep = preprocess.build(data.inputs, data.X_train, estimator, cfg.model.standardize)
        estimator = preprocess.attach(estimator, prep)
        accepts_missing = prep.accepts_missing
    else:
        accepts_missing = None  # probed below
    booster = boosting.library(final)
    # XGBoost's classifiers take class indices only: fitted on indices, decoded by the runtime
    label_encoded = booster == "xgboost" and cfg.task == "classification"
    y_train = data.y_train.map({label: i for i, label in enumerate(data.classes)}) if label_encoded else data.y_train
    started = time.perf_counter()
    stopping: dict[str, Any] = {}
    try:
        if booster:
            device = boosting.use_device(final, booster, cfg.train.device)
            stopping = boosting.fit(estimator, final, booster, data.X_train, y_train, cfg.train, cfg.task)
            boosting.release_device(final, booster, device)
        else:
            estimator.fit(data.X_train, y_train)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"fitting {type(final).__name__} failed: {type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - started
    train_score = float(estimator.score(data.X_train, y_train))
    registry.log_metrics({"train_score": train_score, "fit_seconds": seconds,
                          **{k: v for k, v in stopping.items() if isinstance(v, int | float)}})  # fmt: skip
    if accepts_missing is None:
        accepts_missing = _takes_missing(estimator, data)
    name = cfg.model.estimator or cfg.model.factory
    save_package(
        project.model_dir,
        {"kind": "sklearn", "task": cfg.task, "inputs": data.inputs, "target": cfg.data.target,
         "classes": data.classes, "estimator": name, "estimator_class": type(final).__name__,
         "trained_on": "cpu", "accepts_missing": accepts_missing, "target_range": _target_range(data),
         "label_encoded": label_encoded},
        model=estimator,
        factory_file=factory_path(cfg.model.factory, project.root, cfg.model.allow_external_code)
        if cfg.model.factory else None,
        extra_files={"schema.yaml": project.schema_path},
    )  # fmt: skip
    stopped = f", best {stopping['best_rounds']} of {stopping['rounds']} rounds" if stopping else ""
    details = {"figure": f"{type(final).__name__}, train score {train_score:.3f}{stopped}",
               "estimator": type(final).__name__, "params": plain(final.get_params(deep=False)),
               "fit_seconds": round(seconds, 3), "best_epoch": stopping.get("best_rounds"),
               "stopped_early": stopping.get("stopped_early")}  # fmt: skip
    return details, "cpu", True, distribution_of(final)


def _takes_missing(estimator, data: Dataset) -> bool:
    """Does the fitted estimator answer a row with a missing value? (Asked once, at packaging.)"""
    probe = data.X_train.head(1).copy()
    column = next((i.name for i in data.inputs if i.kind == "number"), None)
    if column is None:
        return False
    probe[column] = np.nan
    try:
        estimator.predict(probe)
        return True
    except Exception:
        return False


def _target_range(data: Dataset) -> list[float] | None:
    """A regression target's training range: feedback labels far outside it are refused."""
    if data.classes is not None:
        return None
    if data.target_range is not None:  # a streamed table's, from all its training rows
        return list(data.target_range)
    return [float(data.y_train.min()), float(data.y_train.max())]


def _write_reference_profile(project: Project, data: Dataset) -> None:
    """The training inputs and the model's own predictions on them, binned once: what live
    traffic is compared with for drift. It travels inside the package, so with every version."""
    from loopml.data.profile import PREDICTION_COLUMN, Profile
    from loopml_runtime import Predictor

    predictor = Predictor(project.model_dir)

    def with_predictions(X):  # what drift watches: the inputs (a text's figures) and the predictions
        return predictor.describe(X).assign(**{PREDICTION_COLUMN: predictor.predict(X)})

    profile = Profile.fit(with_predictions(data.X_train))
    if data.stream is not None:  # the grid is the sample's; the counts are every training row's, piece by piece
        from loopml.data.stream import TRAIN
        from loopml_runtime.package import conform

        counted = None
        for frame in data.stream.frames(TRAIN):
            chunk = profile.count(with_predictions(conform(frame, data.inputs)))
            counted = chunk if counted is None else counted.merge(chunk)
        profile = counted
    write_text_atomic(project.model_dir / "reference_profile.json", json.dumps(profile.to_dict()))


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
    # how many processes train is not part of it: a checkpoint resumes under another world size
    train = cfg.train.model_dump(exclude={"distributed"})
    payload = json.dumps([cfg.data.model_dump(), cfg.model.model_dump(), train, digest], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _resumable_run(project: Project, fingerprint: str, registry) -> str | None:
    """The MLflow run a killed training left behind, if it trained the same thing (and still exists)."""
    marker = project.state / "train-run.json"
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return None
    if info.get("fingerprint") != fingerprint or not registry.run_exists(info.get("run_id", "")):
        return None
    return info["run_id"]
