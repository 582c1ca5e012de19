"""Building compressed variants of a trained model package, each a package of its own.

Torch models: ONNX export (dynamic batch, checked against eager at batch 1 and 64), ONNX Runtime int8
(dynamic, and static calibrated on training rows), torch dynamic int8, structured channel pruning
(Torch-Pruning) and low-rank SVD of Linear layers, both fine-tuned and then run on ONNX Runtime.
scikit-learn models: skl2onnx (onnxmltools for XGBoost and LightGBM) with zipmap off.

A variant that cannot be built raises `VariantFailed` with the reason; the stage records it and
moves on. Pruned and factorized models change architecture, so they travel as ONNX (or a whole
module), never as `factory(params)` plus a state dict.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from loopml.config import OptimizeConfig
from loopml_runtime import Predictor, derive_package

logger = logging.getLogger(__name__)

TORCH_VARIANTS = ("onnx", "onnx_int8", "onnx_int8_static", "torch_int8", "prune", "svd", "fp16", "bf16")
SKLEARN_VARIANTS = ("onnx",)
TEXT_VARIANTS = ("onnx", "onnx_int8", "onnx_int8_static")  # the encoder and head as one ONNX graph
AUTO = {"torch": ("onnx", "onnx_int8", "torch_int8"), "sklearn": ("onnx",), "text": ("onnx", "onnx_int8")}
KNOWN = {"torch": TORCH_VARIANTS, "sklearn": SKLEARN_VARIANTS, "text": TEXT_VARIANTS}
EXPORT_TOLERANCE = 1e-3  # max |ONNX - eager| on the network's outputs, relative to their largest magnitude
MIN_CALIBRATION_ROWS = 16


class VariantFailed(Exception):
    """This variant could not be built; the message is the reason shown in the table."""


@dataclass(frozen=True)
class TrainingRows:
    """What building needs from the data: training rows (raw columns) and their targets."""

    X: pd.DataFrame
    y: np.ndarray


@dataclass(frozen=True)
class Built:
    name: str
    package: Path
    runtime: str
    details: dict[str, str] = field(default_factory=dict)


def expand(names: list[str] | str, kind: str, settings: OptimizeConfig) -> list[str]:
    """The variant names to try, one per prune ratio ("prune_50" for 0.5)."""
    names = list(AUTO[kind]) if names == "auto" else list(names)
    out: list[str] = []
    for name in dict.fromkeys(names):
        if name == "prune" and kind == "torch":
            out += [f"prune_{_percent(r)}" for r in settings.prune_ratios] or ["prune"]
        else:
            out.append(name)
    return out


def _percent(ratio: float) -> str:
    return f"{ratio * 100:g}".replace(".", "_").replace("-", "minus")


def build(name: str, base: Predictor, out: Path, settings: OptimizeConfig, rows: TrainingRows) -> Built:
    """Build one variant of `base` under `out/<name>`; VariantFailed says why it could not be."""
    started = time.perf_counter()
    family = base.kind
    known = KNOWN[family]
    root = name.split("_")[0] if name.startswith(("prune_", "svd_")) else name
    if root not in known:
        owner = next((f for f, names in KNOWN.items() if root in names), None)
        hint = f"a {'scikit-learn' if owner == 'sklearn' else owner} variant" if owner else "unknown"
        raise VariantFailed(f"{hint}: a {family} model takes {', '.join(known)}")
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    try:
        built = _dispatch(name, root, base, work, out, settings, rows)
    except ModuleNotFoundError as exc:  # the compression tools are an extra: loopml serves without them
        raise VariantFailed(f"needs the {exc.name} package: pip install 'loopml[optimize]'") from None
    built.details["build_s"] = f"{time.perf_counter() - started:.2f}"
    return built


def _dispatch(name, root, base: Predictor, work: Path, out: Path, settings, rows) -> Built:
    if base.kind == "sklearn":
        return _sklearn_onnx(base, work, settings)
    if root == "onnx":
        return _onnx_package(name, base, work, _base_export(base, out, settings, rows), settings)
    if name in ("onnx_int8", "onnx_int8_static"):
        return _onnx_int8(name, base, work, settings, rows, static=name == "onnx_int8_static")
    if name == "torch_int8":
        return _torch_int8(name, base, work)
    if root == "prune":
        return _prune(name, base, work, settings, rows)
    if root == "svd":
        return _svd(name, base, work, settings, rows)
    return _half(name, base)  # fp16, bf16


# -- torch -------------------------------------------------------------------------------------


def _module(base: Predictor):
    """A private copy of the base network, on the CPU, in eval mode (variants never touch the base);
    a text network as ONNX takes it (token ids in; logits and sentence embedding out)."""
    module = copy.deepcopy(base.model).cpu().eval()
    if base.kind == "text":
        from loopml_runtime.text import ExportedText

        return ExportedText(module).eval()
    return module


def _onnx(name, base: Predictor, work: Path, module, settings, rows, details=None) -> Built:
    """`module` exported to ONNX and packaged to run on ONNX Runtime."""
    path = _export(module, base, work / "model.onnx", settings, rows)
    return _onnx_package(name, base, work, path, settings, details)


def _onnx_package(name, base: Predictor, work: Path, path: Path, settings, details=None) -> Built:
    dest = work / "model"  # the folder name MLflow stores the package under (registry.PACKAGE_FOLDER)
    derive_package(base.path, dest, {"runtime": "onnxruntime", "model_file": "model.onnx", "variant": name,
                                     "onnx_opset": settings.opset}, path)  # fmt: skip
    return Built(name, dest, "onnxruntime", {"exporter": "torch.onnx (dynamo)", "opset": str(settings.opset),
                                             **(details or {})})  # fmt: skip


def _export(module, base: Predictor, path: Path, settings, rows) -> Path:
    """Export with a dynamic batch dimension, weights inside the file; check it against eager."""
    import torch

    example = torch.from_numpy(base.network_inputs(rows.X.head(64)))
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms", four times
    dims = {0: torch.export.Dim("batch", min=1)}
    names = {"input_names": ["input"], "output_names": ["output"]}
    if base.kind == "text":  # token ids: any number of rows, any width up to the encoder's positions
        from loopml_runtime.text import ExportedText

        dims[1] = torch.export.Dim("tokens", min=2, max=base.meta["text"]["max_length"])
        names = {"input_names": ["ids"], "output_names": list(ExportedText.OUTPUTS)}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example[:2],), str(path), dynamo=True, external_data=False,
                              opset_version=settings.opset, dynamic_shapes=(dims,), verbose=False, **names)  # fmt: skip
    except ModuleNotFoundError:
        raise
    except Exception as exc:  # the exporter raises many types: unsupported ops, data-dependent shapes
        raise VariantFailed(f"ONNX export failed: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        quiet.setLevel(level)
    _check_export(path, module, example)
    return path


def _base_export(base: Predictor, out: Path, settings, rows) -> Path:
    """The base network's fp32 export, made once per stage and shared by the variants built on it."""
    path = out / "base-fp32.onnx"
    if not path.is_file():
        _export(_module(base), base, path, settings, rows)
    return path


def _check_export(path: Path, module, example) -> None:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, min(64, len(example))):
        x = example[:batch]
        with torch.no_grad():
            expected = module(x)
        expected = (expected[0] if isinstance(expected, tuple) else expected).float().numpy()  # logits first
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        scale = max(1.0, float(np.abs(expected).max()))
        if got.shape != expected.shape or float(np.abs(got - expected).max()) > EXPORT_TOLERANCE * scale:
            raise VariantFailed(f"the exported model disagrees with eager PyTorch at batch {batch} "
                                f"(max |Δ| {float(np.abs(got - expected).max()):.3g})")  # fmt: skip


def _onnx_int8(name, base: Predictor, work: Path, settings, rows, static: bool) -> Built:
    """ONNX Runtime int8: weights (dynamic: activations quantized per call) or weights and activations
    with ranges calibrated on training rows (static, QDQ)."""
    from onnxruntime import quantization as q

    source = _base_export(base, work.parent, settings, rows)
    target = work / "model.int8.onnx"
    try:
        if not static:
            q.quantize_dynamic(str(source), str(target), weight_type=q.QuantType.QInt8)
        else:
            count = min(settings.calibration_rows, len(rows.X))
            if count < MIN_CALIBRATION_ROWS:
                raise VariantFailed(f"calibration needs at least {MIN_CALIBRATION_ROWS} training rows; {count} "
                                    f"available (optimize.calibration_rows: {settings.calibration_rows})")  # fmt: skip
            inputs = base.network_inputs(rows.X.sample(count, random_state=0) if len(rows.X) > count else rows.X)

            name_in = "ids" if base.kind == "text" else "input"

            class Reader(q.CalibrationDataReader):
                def __init__(self):
                    self.batches = iter(np.array_split(inputs, max(1, len(inputs) // 32)))

                def get_next(self):
                    batch = next(self.batches, None)
                    return None if batch is None else {name_in: batch}

            q.quantize_static(str(source), str(target), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                              activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)  # fmt: skip
    except (VariantFailed, ModuleNotFoundError):
        raise
    except Exception as exc:
        raise VariantFailed(f"quantization failed: {type(exc).__name__}: {_first_line(exc)}") from None
    how = "static QDQ, per-channel, calibrated" if static else "dynamic"
    return _onnx_package(name, base, work, target, settings, {"quantization": f"int8 {how}"})


def _torch_int8(name, base: Predictor, work: Path) -> Built:
    """torch dynamic int8 on Linear layers (weights int8, activations quantized per call; CPU only)."""
    import torch
    from torch import nn

    module = _module(base)
    if not any(isinstance(m, nn.Linear) for m in module.modules()):
        raise VariantFailed("the model has no Linear layer for dynamic int8 to quantize")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates its quantized tensors in favour of torchao
            quantized = torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
    except Exception as exc:  # any failure of the quantizer is this variant's reason
        raise VariantFailed(f"torch dynamic quantization failed: {type(exc).__name__}: {_first_line(exc)}") from None
    return _whole_module(name, base, work, quantized, {"quantization": "int8 dynamic (Linear)"}, cpu_only=True)


def _whole_module(name, base: Predictor, work: Path, module, details, cpu_only: bool = False) -> Built:
    import torch

    path = work / "module.pt"
    with _classes_findable(module):
        torch.save(module, path)
    dest = work / "model"  # the folder name MLflow stores the package under (registry.PACKAGE_FOLDER)
    meta = {"runtime": "torch", "model_file": "module.pt", "variant": name}
    if cpu_only:
        meta["cpu_only"] = True
    derive_package(base.path, dest, meta, path)
    return Built(name, dest, "torch", details)


@contextmanager
def _classes_findable(module):
    """Let pickle find the module's classes by name. A user's model file is imported again by every
    package loaded (`loopml_user_<stem>`), so the name may now point at a later copy than the one
    this module's classes came from: for the save, it points at a stand-in holding these classes."""
    stand_ins: dict[str, types.ModuleType] = {}
    for cls in {type(m) for m in module.modules()}:
        found = sys.modules.get(cls.__module__)
        if getattr(found, cls.__qualname__, None) is not cls and "." not in cls.__qualname__:
            stand_in = stand_ins.setdefault(cls.__module__, types.ModuleType(cls.__module__))
            setattr(stand_in, cls.__qualname__, cls)
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, original in saved.items():
            if original is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = original


def _half(name, base: Predictor) -> Built:
    import torch

    if not torch.cuda.is_available():
        raise VariantFailed(f"{name} runs on a CUDA GPU; none is visible here")
    raise VariantFailed(f"{name} serving is not built yet: the served runtimes are fp32 torch and ONNX Runtime")


def _prune(name, base: Predictor, work: Path, settings, rows) -> Built:
    """Structured pruning: remove the least important channels (L2 magnitude, Torch-Pruning keeps the
    graph consistent), fine-tune, then run on ONNX Runtime."""
    import torch
    import torch_pruning as tp
    from torch import nn

    ratio = _ratio_of(name, settings)
    module = _module(base)
    example = torch.from_numpy(base.network_inputs(rows.X.head(2)))
    heads = [m for m in module.modules() if isinstance(m, nn.Linear)][-1:]  # the output layer keeps its size
    before = sum(p.numel() for p in module.parameters())
    try:
        pruner = tp.pruner.MetaPruner(module, example, importance=tp.importance.MagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=heads)  # fmt: skip
        pruner.step()
    except ModuleNotFoundError:
        raise
    except Exception as exc:
        raise VariantFailed(f"pruning failed: {type(exc).__name__}: {_first_line(exc)}") from None
    after = sum(p.numel() for p in module.parameters())
    tuned = _fine_tune(module, base, rows, settings)
    return _onnx(name, base, work, module.eval(), settings, rows, {
        "pruned": f"{ratio:.0%} of channels", "parameters": f"{before:,} -> {after:,}", **tuned})  # fmt: skip


def _ratio_of(name: str, settings: OptimizeConfig) -> float:
    ratios = {f"prune_{_percent(r)}": r for r in settings.prune_ratios}
    ratio = ratios.get(name)
    if ratio is None or not 0 < ratio < 1:
        raise VariantFailed(f"prune ratio {ratio if ratio is not None else name!r} must lie in (0, 1) "
                            "(optimize.prune_ratios), e.g. 0.5 to remove half the channels")  # fmt: skip
    return ratio


def _svd(name, base: Predictor, work: Path, settings, rows) -> Built:
    """Low-rank factorization: each Linear W (out x in) becomes two, of rank r, when that is smaller;
    r is the least rank holding `svd_energy` of the squared singular values. Then fine-tune."""
    import torch
    from torch import nn

    energy = settings.svd_energy
    if not 0 < energy < 1:
        raise VariantFailed(f"optimize.svd_energy must lie in (0, 1), e.g. 0.9; got {energy}")
    module = _module(base)
    ranks = []
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            w = child.weight.detach()
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            share = torch.cumsum(s**2, 0) / torch.sum(s**2)
            rank = int(torch.searchsorted(share, torch.tensor(energy)).item()) + 1
            if rank * (w.shape[0] + w.shape[1]) >= w.numel():
                continue  # no smaller: keep the layer
            first = nn.Linear(w.shape[1], rank, bias=False)
            second = nn.Linear(rank, w.shape[0], bias=child.bias is not None)
            with torch.no_grad():
                first.weight.copy_(torch.diag(s[:rank]) @ vh[:rank])
                second.weight.copy_(u[:, :rank])
                if child.bias is not None:
                    second.bias.copy_(child.bias)
            setattr(parent, child_name, nn.Sequential(first, second))
            ranks.append(f"{w.shape[1]}x{w.shape[0]}->r{rank}")
    if not ranks:
        raise VariantFailed(f"no Linear layer gets smaller at {energy:.0%} of its spectrum")
    tuned = _fine_tune(module, base, rows, settings)
    return _onnx(name, base, work, module.eval(), settings, rows,
                 {"factorized": ", ".join(ranks), "energy": f"{energy:.0%}", **tuned})  # fmt: skip


def _fine_tune(module, base: Predictor, rows: TrainingRows, settings: OptimizeConfig) -> dict[str, str]:
    """A few epochs of AdamW on the training rows, so the smaller network recovers what it lost."""
    import torch

    if settings.finetune_epochs == 0:
        return {"fine_tuned": "no"}
    x = torch.from_numpy(base.network_inputs(rows.X))
    if base.task == "classification":
        index = {c: i for i, c in enumerate(base.classes)}
        y = torch.tensor([index[v] for v in rows.y.tolist()], dtype=torch.long)
        loss_fn = torch.nn.functional.cross_entropy
    else:
        target = base.meta["target_scale"]
        y = torch.tensor((rows.y.astype(np.float64) - target["mean"]) / target["std"], dtype=torch.float32)
        loss_fn = lambda out, t: torch.nn.functional.mse_loss(out.reshape(-1), t)  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    module.train()
    for _ in range(settings.finetune_epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(module(x[batch]), y[batch]).backward()
            optimizer.step()
    module.eval()
    return {"fine_tuned": f"{settings.finetune_epochs} epochs"}


# -- scikit-learn ------------------------------------------------------------------------------


def _sklearn_onnx(base: Predictor, work: Path, settings: OptimizeConfig) -> Built:
    """skl2onnx (XGBoost and LightGBM through onnxmltools' converters), probabilities as a tensor."""
    if not base.numeric:
        raise VariantFailed("not convertible: the model takes text, date or boolean columns; the ONNX path "
                            "covers all-numeric inputs")  # fmt: skip
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = _register_boosters(base.model)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if base.task == "classification" else None
    try:
        onx = to_onnx(model, initial_types=[("input", FloatTensorType([None, len(base.features)]))],
                      options=options, target_opset={"": settings.opset, "ai.onnx.ml": 3})  # fmt: skip
    except ModuleNotFoundError:
        raise
    except Exception as exc:  # skl2onnx raises many types for what it cannot convert
        raise VariantFailed(f"not convertible: {type(exc).__name__}: {_first_line(exc)}") from None
    path = work / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    dest = work / "model"  # the folder name MLflow stores the package under (registry.PACKAGE_FOLDER)
    derive_package(base.path, dest, {"runtime": "onnxruntime", "model_file": "model.onnx", "variant": "onnx",
                                     "onnx_opset": settings.opset}, path)  # fmt: skip
    return Built("onnx", dest, "onnxruntime", {"exporter": "skl2onnx", "opset": str(settings.opset)})


def _register_boosters(model):
    """Teach skl2onnx XGBoost's and LightGBM's converters (from onnxmltools) when the model uses them;
    returns the model to convert (XGBoost's on a copy without feature names: its converter reads
    features as "f0", "f1", ...)."""
    steps = [s for _, s in model.steps] if hasattr(model, "steps") else [model]
    names = {type(step).__name__ for step in steps}
    if not names & {"XGBClassifier", "XGBRegressor", "LGBMClassifier", "LGBMRegressor"}:
        return model
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False]}
    if names & {"XGBClassifier", "XGBRegressor"}:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                    convert_xgboost, options=classifier_options)  # fmt: skip
        update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes,
                                    convert_xgboost)  # fmt: skip
    if names & {"LGBMClassifier", "LGBMRegressor"}:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                    convert_lightgbm, options=classifier_options)  # fmt: skip
        update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes,
                                    convert_lightgbm)  # fmt: skip
    if names & {"XGBClassifier", "XGBRegressor"}:
        model = copy.deepcopy(model)
        for step in [s for _, s in model.steps] if hasattr(model, "steps") else [model]:
            if type(step).__name__ in ("XGBClassifier", "XGBRegressor"):
                step.get_booster().feature_names = None
    return model


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]
