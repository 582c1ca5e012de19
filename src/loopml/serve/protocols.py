"""Request parsing and response encoding for the two protocols loopml speaks.

Open Inference Protocol (KServe V2 / Triton HTTP), JSON tensors and the binary tensor
extension (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`),
so `tritonclient.http` works unmodified. MLflow scoring (`/invocations`): `dataframe_split`,
`dataframe_records`, `instances`, `inputs`, as JSON or CSV. Every parser returns the
canonical float64 matrix (rows × features in training order); every mistake is a
`RequestError` naming the field and what was expected.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np
import orjson
import pandas as pd

V2_TO_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
               "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
               "FP32": np.float32, "FP64": np.float64}  # fmt: skip


class RequestError(Exception):
    """The caller's mistake: becomes a 4xx with `{"error": message}`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- Open Inference Protocol -------------------------------------------------------------


def parse_v2(body: bytes, header_length: str | None, features: list[str]) -> tuple[np.ndarray, dict]:
    """(matrix, request JSON) from a V2 infer request, JSON-only or with binary tensors."""
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise RequestError(f"Inference-Header-Content-Length must be an integer; got {header_length!r}") from None
        if not 0 < split <= len(body):
            raise RequestError(f"Inference-Header-Content-Length {split} is outside the body ({len(body)} bytes)")
        header, binary = body[:split], memoryview(body)[split:]
    else:
        header, binary = body, memoryview(b"")
    request = _json(header)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise RequestError('a V2 infer request is a JSON object with a non-empty "inputs" list')
    tensors, offset = {}, 0
    for index, spec in enumerate(request["inputs"]):
        name, array, offset = _v2_tensor(spec, index, binary, offset)
        tensors[name] = array
    if offset != len(binary):
        raise RequestError(f"{len(binary) - offset} bytes of binary data belong to no input (check binary_data_size)")
    return _v2_matrix(tensors, features), request


def _v2_tensor(spec: Any, index: int, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise RequestError(f"{where} must be an object with name, shape, datatype and data")
    name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    if not isinstance(name, str):
        raise RequestError(f"{where}.name must be a string")
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise RequestError(f"{where} ({name}).shape must be a list of non-negative integers; got {shape!r}")
    if datatype not in V2_TO_NUMPY:
        raise RequestError(f"{where} ({name}).datatype must be a numeric V2 type ({', '.join(V2_TO_NUMPY)}); "
                           f"got {datatype!r}")  # fmt: skip
    dtype = np.dtype(V2_TO_NUMPY[datatype])
    count = int(np.prod(shape))
    size = (spec.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize:
            raise RequestError(f"{where} ({name}): binary_data_size {size!r} does not match shape {shape} of "
                               f"{datatype} ({count * dtype.itemsize} bytes)")  # fmt: skip
        if offset + size > len(binary):
            raise RequestError(f"{where} ({name}): the body ends before its {size} bytes of binary data")
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype.newbyteorder("<")).reshape(shape)
        return name, array, offset + size
    data = spec.get("data")
    if data is None:
        raise RequestError(f'{where} ({name}) has neither "data" nor parameters.binary_data_size')
    try:
        with np.errstate(over="ignore"):  # out-of-range floats become inf: the NaN policy decides
            array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(f"{where} ({name}).data must hold {datatype} numbers") from None
    if array.size != count:
        raise RequestError(f"{where} ({name}): shape {shape} needs {count} values; data has {array.size}")
    return name, array.reshape(shape), offset


def _v2_matrix(tensors: dict[str, np.ndarray], features: list[str]) -> np.ndarray:
    if len(tensors) == 1 and next(iter(tensors)) not in features:
        name, array = next(iter(tensors.items()))
        if name != "input":
            examples = ", ".join(features[:4])
            raise RequestError(f'unknown input {name!r}; send one tensor named "input" of shape [rows, '
                               f"{len(features)}], or one tensor per feature ({examples}, ...)")  # fmt: skip
        if array.ndim == 1 and array.shape[0] == len(features):
            array = array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != len(features):
            raise RequestError(f'input "input" must have shape [rows, {len(features)}]; got {list(array.shape)}')
        return array.astype(np.float64, copy=False)
    unknown = [n for n in tensors if n not in features]
    if unknown:
        raise RequestError(f"unknown input(s) {unknown}; per-feature inputs must be named after the features")
    missing = [f for f in features if f not in tensors]
    if missing:
        raise RequestError(f"missing feature input(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    columns = []
    for feature in features:
        column = tensors[feature]
        if column.ndim == 2 and column.shape[1] == 1:
            column = column[:, 0]
        if column.ndim != 1:
            raise RequestError(
                f"feature input {feature!r} must have shape [rows] or [rows, 1]; got {list(column.shape)}"
            )
        columns.append(column.astype(np.float64, copy=False))
    if len({len(c) for c in columns}) != 1:
        raise RequestError("feature inputs have different numbers of rows")
    return np.column_stack(columns)


def encode_v2(outputs: dict[str, np.ndarray], request: dict, model_name: str,
              model_version: str) -> tuple[bytes, int | None]:  # fmt: skip
    """The V2 response body, and the JSON header length when binary outputs follow it."""
    from loopml.serve.runtime import v2_datatype

    wanted = request.get("outputs")
    default_binary = bool((request.get("parameters") or {}).get("binary_data_output", False))
    if wanted is None:
        selection = [(name, default_binary) for name in outputs]
    else:
        if not isinstance(wanted, list):
            raise RequestError('"outputs" must be a list of {"name": ...} objects')
        selection = []
        for spec in wanted:
            name = spec.get("name") if isinstance(spec, dict) else None
            if name not in outputs:
                raise RequestError(f"unknown output {name!r}; this model has {', '.join(outputs)}")
            binary = (spec.get("parameters") or {}).get("binary_data", default_binary)
            selection.append((name, bool(binary)))
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": []}
    if "id" in request:
        response["id"] = request["id"]
    blobs = []
    for name, binary in selection:
        values = outputs[name]
        entry: dict[str, Any] = {"name": name, "datatype": v2_datatype(values.dtype), "shape": list(values.shape)}
        if binary:
            blob = _to_bytes(values)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values.ravel().tolist()
        response["outputs"].append(entry)
    header = orjson.dumps(response)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _to_bytes(values: np.ndarray) -> bytes:
    if values.dtype.kind in ("U", "S", "O"):  # BYTES: each element as a 4-byte little-endian length + bytes
        parts = []
        for item in values.ravel():
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()


# -- MLflow scoring ----------------------------------------------------------------------


def parse_mlflow(body: bytes, content_type: str, features: list[str]) -> np.ndarray:
    """The matrix from an MLflow `/invocations` request (JSON or CSV)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "text/csv":
        try:
            frame = pd.read_csv(io.BytesIO(body))
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise RequestError(f"the CSV body cannot be read: {str(exc).splitlines()[0]}") from None
        return frame_matrix(frame, features)
    if kind not in ("application/json", ""):
        raise RequestError(f"Content-Type must be application/json or text/csv; got {content_type!r}", status=415)
    payload = _json(body)
    if not isinstance(payload, dict):
        raise RequestError("the JSON body must be an object with one of dataframe_split, dataframe_records, "
                           "instances, inputs")  # fmt: skip
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in payload]
    if len(keys) != 1:
        raise RequestError(f"the JSON body needs exactly one of dataframe_split, dataframe_records, instances, "
                           f"inputs; got {sorted(payload) or 'none'}")  # fmt: skip
    key, value = keys[0], payload[keys[0]]
    if key == "dataframe_split":
        if not isinstance(value, dict) or "data" not in value:
            raise RequestError('dataframe_split must be {"columns": [...], "data": [[...], ...]}')
        columns = value.get("columns")
        data = value["data"]
        if columns is None:
            return _rows_matrix(data, features, key)
        fast = _split_fast(columns, data, features)
        if fast is not None:
            return fast
        try:
            frame = pd.DataFrame(data, columns=columns)
        except (ValueError, TypeError) as exc:
            raise RequestError(f"dataframe_split does not form a table: {exc}") from None
        return frame_matrix(frame, features)
    if key == "dataframe_records" or (isinstance(value, list) and value and isinstance(value[0], dict)):
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise RequestError(f"{key} must be a list of {{column: value}} objects")
        try:  # fast path: every record has every feature as a number
            return np.asarray([[record[f] for f in features] for record in value], dtype=np.float64)
        except (KeyError, ValueError, TypeError):
            return frame_matrix(pd.DataFrame.from_records(value), features)  # slow path, precise errors
    if isinstance(value, dict):  # {"inputs": {"feature": [values], ...}}: columns
        try:
            frame = pd.DataFrame(value)
        except (ValueError, TypeError) as exc:
            raise RequestError(f"{key} as an object must map each feature to a list of values: {exc}") from None
        return frame_matrix(frame, features)
    return _rows_matrix(value, features, key)


def _split_fast(columns, data, features: list[str]) -> np.ndarray | None:
    """dataframe_split without pandas when it is all numbers and has every feature; None otherwise
    (the pandas path then finds and names the problem)."""
    if not isinstance(columns, list) or not isinstance(data, list):
        return None
    try:
        matrix = np.asarray(data, dtype=np.float64)
        position = {name: i for i, name in enumerate(columns)}
        order = [position[f] for f in features]
    except (ValueError, TypeError, KeyError):
        return None
    if matrix.ndim != 2 or matrix.shape[1] != len(columns) or matrix.shape[0] == 0:
        return None
    return matrix if order == list(range(len(columns))) else matrix[:, order]


def _rows_matrix(rows: Any, features: list[str], key: str) -> np.ndarray:
    """Rows as lists, in the model's feature order."""
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        raise RequestError(
            f"{key} must be a list of rows of {len(features)} numbers (features in training order)"
        ) from None
    if matrix.ndim == 1 and matrix.shape[0] == len(features):
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise RequestError(
            f"{key} must be rows of {len(features)} values (one per feature); got shape {list(matrix.shape)}"
        )
    return matrix


def frame_matrix(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise RequestError(f"missing feature column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                           f"the model needs {len(features)} columns: {', '.join(features[:6])}, ...")  # fmt: skip
    columns = []
    for feature in features:
        column = frame[feature]
        try:
            columns.append(pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan))
        except (ValueError, TypeError):
            bad = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
            example = repr(bad.iloc[0]) if len(bad) else "a non-number"
            raise RequestError(f"feature {feature!r} must be numeric; row {bad.index[0] if len(bad) else '?'} "
                               f"holds {example}") from None  # fmt: skip
    if not columns or len(frame) == 0:
        raise RequestError("the request has no rows")
    return np.column_stack(columns)


def mlflow_response(predictions: np.ndarray) -> bytes:
    return orjson.dumps({"predictions": predictions.tolist()})


def _json(raw: bytes):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Python's json module writes NaN and Infinity (not strict JSON); accept them so the
        # NaN policy, not a parse error, decides what happens to such rows.
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise RequestError(f"the body is not valid JSON: {exc}") from None
