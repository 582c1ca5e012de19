"""`Predictor`: a loaded model package that predicts on tables (raw columns, by name) or, for
all-numeric models, on a float matrix with the columns in training order (the serving fast path).

Torch models: conform -> preprocessor (if any) -> standardize -> forward; labels by argmax and
softmax probabilities, or the regression output unscaled. scikit-learn models: conform -> the
fitted estimator (a pipeline carries its own preprocessing). Text models (`loopml_runtime.text`):
conform -> tokenize (cut to max_length, counted in `truncated_rows`) -> forward in buckets of rows
of like length -> the same labels and probabilities as torch models.

The runtime that runs the model (`meta["runtime"]`) may differ from its family (`kind`): an optimized
variant of a torch model runs as ONNX on ONNX Runtime (`model.onnx`) or as a whole torch module
(`module.pt`: pruned, factorized or quantized, so no longer `factory(params)` plus a state dict); a
scikit-learn model converted by skl2onnx runs on ONNX Runtime. Pre- and post-processing stay the
family's, so every runtime answers in the same form.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from loopml_runtime.errors import InputError, PackageError
from loopml_runtime.package import META_FILE, conform, inputs_of


class Predictor:
    """Loads a packaged model and predicts on DataFrames (columns by name, extra columns ignored)."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None):
        self.path = Path(path)
        self.threads = threads  # ONNX Runtime's intra-op threads (None: its default, every core)
        meta_file = self.path / META_FILE
        if not meta_file.is_file():
            raise PackageError(f"{self.path}: not a loopml model package (no {META_FILE})")
        try:
            self.meta = json.loads(meta_file.read_text())
        except ValueError as exc:
            raise PackageError(f"{meta_file}: damaged ({exc}); train the model again") from None
        self.inputs = inputs_of(self.meta)
        self.features: list[str] = [i.name for i in self.inputs]
        self.numeric = all(i.kind == "number" for i in self.inputs)  # the matrix path applies
        self.classes: list | None = self.meta.get("classes")
        # an estimator fitted on class indices (XGBoost's classifiers): its outputs index `classes`
        self._decode = np.asarray(self.classes, dtype=object) if self.meta.get("label_encoded") else None
        self.task: str = self.meta["task"]
        self.kind: str = self.meta["kind"]  # the model family: torch or sklearn
        self.runtime: str = self.meta.get("runtime", self.kind)  # what runs it: torch, sklearn or onnxruntime
        self.variant: str = self.meta.get("variant", "base")  # the optimize variant, "base" for the trained model
        # Can the model take a missing value? (Imputing pipelines and NaN-aware trees can.)
        self.accepts_missing: bool = bool(self.meta.get("accepts_missing", False))
        # int8 torch modules run on the CPU alone (their quantized kernels have no CUDA version)
        self.device = "cpu" if self.meta.get("cpu_only") else device
        self._float_only = all(np.dtype(i.dtype or "float64") == np.float64 for i in self.inputs if i.kind == "number")
        self._arrays_ok: bool | None = None
        self.truncated_rows = 0  # text models: rows cut to max_length since loading
        self._tokenizer = self._vocabulary = None
        self._user_module = self._load_user_module()
        self._preprocessor = self._load_joblib(self.meta["preprocessor"]) if self.meta.get("preprocessor") else None
        self._model = self._load()
        self._argmax_is_predict = self.runtime == "sklearn" and self.task == "classification" and _argmax_predicts(
            self._model)  # fmt: skip

    # -- loading ---------------------------------------------------------------------------
    def _load_user_module(self):
        """The user's model file, imported under the name training imported it by (pickles of
        custom estimators refer to it)."""
        name = self.meta.get("factory_file")
        if not name:
            return None
        path = self.path / name
        try:
            return import_user_file(path)
        except Exception as exc:
            raise PackageError(f"{path}: importing the model's code failed: {type(exc).__name__}: {exc}") from exc

    def _load_joblib(self, name: str):
        import joblib

        try:
            return joblib.load(self.path / name)
        except Exception as exc:  # unpickling raises anything for a damaged file
            raise PackageError(f"{self.path / name}: cannot be loaded ({type(exc).__name__}: {exc}); train the "
                               "model again, or install the package versions it was trained with "
                               "(environment.json)") from None  # fmt: skip

    def _load(self):
        if self.kind == "text":
            return self._load_text()
        if self.runtime == "onnxruntime":
            return self._load_onnx()
        if self.kind == "sklearn":
            return self._load_joblib("estimator.joblib")
        import torch

        if self.meta.get("model_file"):  # a whole module: its architecture is no longer factory(params)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # int8 modules: deprecation notes about quantized storage
                    module = torch.load(self.path / self.meta["model_file"], map_location="cpu", weights_only=False)
            except Exception as exc:
                raise PackageError(f"{self.path / self.meta['model_file']}: cannot be loaded ({type(exc).__name__}: "
                                   f"{exc}); optimize the model again") from None  # fmt: skip
            return module.to(self.device).eval()

        build = getattr(self._user_module, self.meta["factory"].rsplit(":", 1)[1])
        params = inspect.signature(build).parameters
        kwargs = self.meta["factory_kwargs"]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        model = build(**kwargs)
        try:
            state = torch.load(self.path / "weights.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:
            raise PackageError(f"{self.path / 'weights.pt'}: cannot be loaded ({type(exc).__name__}: {exc}); "
                               "train the model again") from None  # fmt: skip
        return model.to(self.device).eval()

    def _load_text(self):
        """The tokenizer and vocabulary, then the network: a torch module, or an ONNX Runtime session."""
        from loopml_runtime.text import load_text_model, load_tokenizer

        try:
            self._tokenizer, self._vocabulary = load_tokenizer(self.path)
            if self.runtime == "onnxruntime":
                return self._load_onnx()
            return load_text_model(self.path, self.meta, self.device)
        except ImportError as exc:
            raise PackageError(f"{self.path}: this text model needs {exc.name}; pip install transformers "
                               "tokenizers safetensors") from None  # fmt: skip
        except (OSError, ValueError, RuntimeError) as exc:
            raise PackageError(f"{self.path}: the text model cannot be loaded ({type(exc).__name__}: {exc}); "
                               "train it again") from None  # fmt: skip

    def _load_onnx(self):
        try:
            import onnxruntime as ort
        except ImportError:
            raise PackageError(f"{self.path}: this model runs on ONNX Runtime; pip install onnxruntime") from None
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort.InferenceSession(str(self.path / self.meta["model_file"]), options, providers=providers)
        except Exception as exc:  # ONNX Runtime raises its own exception types for damaged or unsupported files
            raise PackageError(f"{self.path / self.meta['model_file']}: ONNX Runtime cannot load it "
                               f"({type(exc).__name__}: {exc}); optimize the model again") from None  # fmt: skip
        self._onnx_input = session.get_inputs()[0].name
        self._onnx_outputs = [o.name for o in session.get_outputs()]
        return session

    @property
    def model(self):
        """The loaded model itself: an nn.Module, a fitted estimator, or an ONNX Runtime session."""
        return self._model

    # -- tables ----------------------------------------------------------------------------
    def conform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return conform(frame, self.inputs)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.infer(frame, proba=False)[0]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray | None:
        return self.infer(frame)[1]

    def infer(self, frame: pd.DataFrame, proba: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, class probabilities or None) for a table of raw input columns."""
        table = self.conform(frame)
        if self.kind == "sklearn":
            if self.runtime == "onnxruntime":
                return self._sklearn_onnx(table.to_numpy(dtype=np.float32, na_value=np.nan), proba)
            return self._sklearn(table, proba)
        if self.kind == "text":
            return self._answer(self._text_outputs(table), proba)
        return self._torch(self._numbers(table), proba)

    # -- text --------------------------------------------------------------------------------
    @property
    def text_column(self) -> str | None:
        return self.meta["text"]["column"] if self.kind == "text" else None

    def _encoded(self, table: pd.DataFrame):
        from loopml_runtime.text import encode

        column = self.text_column
        texts = table[column]
        empty = texts.isna().to_numpy()
        if empty.any():
            row = table.index[int(empty.argmax())]
            raise InputError(f"column {column!r}: row {row} holds no text (empty or missing); a text model needs a "
                             "non-empty string in every row")  # fmt: skip
        encoded = encode(self._tokenizer, texts.tolist(), self.meta["text"]["max_length"])
        self.truncated_rows += encoded.truncated
        return encoded

    def _by_length(self, encoded, output: int) -> np.ndarray:
        """The network's `output` (0: logits, 1: sentence embeddings) over rows of like length, cut to
        their bucket's longest, BUCKET_ROWS at a time, back in request order: a short message is never
        padded to a long one's width."""
        from loopml_runtime.text import BUCKET_ROWS, ExportedText

        order = np.argsort(encoded.lengths, kind="stable")
        parts = []
        for start in range(0, len(order), BUCKET_ROWS):
            rows = order[start : start + BUCKET_ROWS]
            width = min(encoded.ids.shape[1], max(1, int(encoded.lengths[rows].max())))
            ids = np.ascontiguousarray(encoded.ids[rows, :width])
            if self.runtime == "onnxruntime":
                parts.append(self._model.run([ExportedText.OUTPUTS[output]], {self._onnx_input: ids})[0])
            else:
                import torch

                with torch.inference_mode():
                    x = torch.from_numpy(ids).to(self.device)
                    out = self._model(x) if output == 0 else self._model.embed(x)
                parts.append(out.float().cpu().numpy())
        out = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, 1), np.float32)
        answers = np.empty_like(out)
        answers[order] = out
        return answers

    def _text_outputs(self, table: pd.DataFrame) -> np.ndarray:
        return self._by_length(self._encoded(table), 0)

    def describe(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The columns drift is watched on: the raw inputs for tables; for a text model, each text's
        token length, out-of-vocabulary rate and projected sentence embedding instead of the text."""
        if self.kind != "text":
            return frame
        from loopml_runtime.text import drift_columns, oov_rate

        table = self.conform(frame)
        encoded = self._encoded(table)
        embeddings = self._by_length(encoded, 1)
        texts = table[self.text_column].tolist()
        found = drift_columns(self.text_column, encoded.lengths, oov_rate(texts, self._vocabulary), embeddings,
                              self.meta["text"]["pca"])  # fmt: skip
        rest = frame.drop(columns=[c for c in frame.columns if c == self.text_column])
        return pd.concat([pd.DataFrame(found, index=frame.index), rest], axis=1)

    # -- matrices (all-numeric models) -----------------------------------------------------
    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        return self.infer_matrix(x, proba=False)[0]

    def infer_matrix(self, x: np.ndarray, proba: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions for a float matrix with the inputs in training order: no DataFrame unless
        the estimator needs column names or its training dtypes."""
        if not self.numeric:
            raise InputError("this model takes named columns (text, dates or booleans), not a number matrix")
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.inputs):
            raise InputError(f"expected shape [rows, {len(self.inputs)}]; got {list(x.shape)}")
        if self.kind == "torch" and self._preprocessor is None:
            return self._torch(x, proba)
        if self.runtime == "onnxruntime":  # a converted scikit-learn model takes the float matrix
            return self._sklearn_onnx(np.asarray(x, dtype=np.float32), proba)
        if self.kind == "sklearn" and self._float_only and self._takes_arrays():
            return self._sklearn(x, proba)
        return self.infer(pd.DataFrame(x, columns=self.features), proba)

    # -- the two kinds ---------------------------------------------------------------------
    def _sklearn(self, table, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "X does not have valid feature names"
            try:
                if proba and self._argmax_is_predict:  # one pass: these classifiers predict argmax(proba)
                    scores = np.asarray(self._model.predict_proba(table), dtype=np.float64)
                    return self._labels(np.asarray(self._model.classes_)[scores.argmax(axis=1)]), scores
                labels = self._labels(np.asarray(self._model.predict(table)))
                scores = None
                if proba and self.task == "classification" and hasattr(self._model, "predict_proba"):
                    scores = np.asarray(self._model.predict_proba(table), dtype=np.float64)
            except (ValueError, TypeError) as exc:
                raise InputError(f"the model cannot take these rows: {exc}") from None
        return labels, scores

    def _sklearn_onnx(self, x: np.ndarray, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """A scikit-learn model converted by skl2onnx (zipmap off): label and probability tensors."""
        outputs = self._model.run(None, {self._onnx_input: np.ascontiguousarray(x)})
        if self.task != "classification":
            return outputs[0].reshape(-1).astype(np.float64), None
        labels = self._labels(np.asarray(outputs[0]).reshape(-1))
        return labels, np.asarray(outputs[1], dtype=np.float64) if proba and len(outputs) > 1 else None

    def _labels(self, predicted: np.ndarray) -> np.ndarray:
        if self._decode is None:
            return predicted
        return self._decode[predicted.astype(np.int64)]

    def _numbers(self, table: pd.DataFrame) -> np.ndarray:
        if self._preprocessor is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return np.asarray(self._preprocessor.transform(table), dtype=np.float32)
        return table.to_numpy(dtype=np.float32, na_value=np.nan)

    def network_inputs(self, frame: pd.DataFrame) -> np.ndarray:
        """A torch model's network input for raw rows: conformed, preprocessed, standardized float32
        (what optimize exports, calibrates and fine-tunes with)."""
        if self.kind == "text":  # token ids, padded to the longest row
            return self._encoded(self.conform(frame)).ids
        if self.kind != "torch":
            raise InputError("only torch and text models take a network input matrix")
        return self._scaled(self._numbers(self.conform(frame)))

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)  # the dtype the weights were trained in
        scale = self.meta.get("feature_scale")
        if scale:
            x = (x - np.asarray(scale["mean"], dtype=np.float32)) / np.asarray(scale["std"], dtype=np.float32)
        return x

    def _torch(self, x: np.ndarray, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = self._scaled(x)
        if self.runtime == "onnxruntime":
            out = np.asarray(self._model.run(None, {self._onnx_input: np.ascontiguousarray(x)})[0], dtype=np.float32)
        else:
            import torch

            with torch.inference_mode():
                out = self._model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device)).float().cpu().numpy()
        return self._answer(out, proba)

    def _answer(self, out: np.ndarray, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """A network's raw outputs -> labels and softmax probabilities, or the regression value unscaled."""
        if self.task != "classification":
            target = self.meta["target_scale"]
            return out.reshape(-1) * target["std"] + target["mean"], None
        classes = np.asarray(self.classes, dtype=object if any(isinstance(c, str) for c in self.classes) else None)
        labels = classes[out.argmax(axis=1)]
        if not proba:
            return labels, None
        out = out - out.max(axis=1, keepdims=True)
        exp = np.exp(out)
        return labels, exp / exp.sum(axis=1, keepdims=True)

    def _takes_arrays(self) -> bool:
        """Does the estimator give the same answers on a bare array as on a DataFrame? (Not when
        it selects columns by name, e.g. a ColumnTransformer.) Checked once, on probe rows."""
        if self._arrays_ok is None:
            probe = np.linspace(-1.0, 1.0, 3 * len(self.features)).reshape(3, -1)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    bare = np.asarray(self._model.predict(probe))
                    framed = np.asarray(self._model.predict(pd.DataFrame(probe, columns=self.features)))
                self._arrays_ok = bool(np.array_equal(bare, framed))
            except Exception:
                self._arrays_ok = False
        return self._arrays_ok


# Classifiers whose `predict` is, by definition, the class of highest `predict_proba` (so one call
# gives both); others (SVC with probability=True, calibrated or thresholded models) may differ.
ARGMAX_CLASSIFIERS = {"LogisticRegression", "HistGradientBoostingClassifier", "RandomForestClassifier",
                      "ExtraTreesClassifier", "GradientBoostingClassifier", "DecisionTreeClassifier",
                      "KNeighborsClassifier", "MLPClassifier", "GaussianNB", "XGBClassifier",
                      "LGBMClassifier"}  # fmt: skip


def _argmax_predicts(model) -> bool:
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    return type(final).__name__ in ARGMAX_CLASSIFIERS and hasattr(model, "classes_")


def import_user_file(path: Path):
    """A user's model file imported as `loopml_user_<stem>`: the name training imports it by and a
    served package imports it by again (pickles of custom estimators refer to it)."""
    module_name = f"loopml_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
