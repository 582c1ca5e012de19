"""Request parsing and response encoding for the two protocols loopml speaks.

Open Inference Protocol (KServe V2 / Triton HTTP), JSON tensors and the binary tensor extension
(`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`), BYTES tensors for
text, so `tritonclient.http` works unmodified. MLflow scoring (`/invocations`): `dataframe_split`,
`dataframe_records`, `instances`, `inputs`, as JSON or CSV.

Every parser returns `Rows` (see `rows`) for the model's raw inputs; every mistake is a
`RequestError` (a 4xx) naming the field and what was expected. Parsing is strict where being lenient
would answer wrongly: text or true/false where a number is expected, a CSV row wider than its
header, duplicate JSON keys or column names, fractions in an integer tensor.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import orjson

from loopml.serve.rows import Rows, Table
from loopml_runtime import Input

V2_TO_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
               "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
               "FP32": np.float32, "FP64": np.float64}  # fmt: skip
DATATYPES = (*V2_TO_NUMPY, "BYTES")
MAX_DIMS = 2  # [rows, inputs] or [rows] / [rows, 1] per input
MAX_DIM = 2**31
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class Signature(tuple):
    """A model's inputs (a tuple of `Input`), with what every request asks of them computed once."""

    names: list[str]
    numeric: bool  # every input a number: requests become one float64 matrix

    def __new__(cls, inputs) -> Signature:
        made = super().__new__(cls, inputs)
        made.names = [i.name for i in made]
        made.numeric = all(i.kind == "number" for i in made)
        return made

    @classmethod
    def of(cls, inputs) -> Signature:
        return inputs if isinstance(inputs, Signature) else cls(inputs)


class RequestError(Exception):
    """The caller's mistake: becomes a 4xx with `{"error": message}`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- JSON ---------------------------------------------------------------------------------------


# Bytes a JSON array of numbers is made of. Deleting them leaves a small remainder (keys, strings,
# literals) that is cheap to count in: one pass over a large body instead of four.
NUMBER_BYTES = b"0123456789.,-+eE[] \t\r\n"


class Shape(NamedTuple):
    """What one pass over a JSON body's bytes tells: colons and quotes written, and whether a
    true/false literal may be there ("e" is a number byte, so they read "tru" and "fals"; a key
    holding those letters only sends the checks down their slower path)."""

    colons: int
    quotes: int
    bools: bool

    @classmethod
    def of(cls, raw: bytes) -> Shape:
        rest = raw.translate(None, NUMBER_BYTES)
        return cls(rest.count(b":"), rest.count(b'"'), b"tru" in rest or b"fals" in rest)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: valid UTF-8, no NaN/Infinity literals, no numbers past float range, at most
    1024 levels deep (orjson's limits), and no duplicate keys in any object."""
    return parse_json_shaped(raw)[0]


def parse_json_shaped(raw: bytes) -> tuple[Any, Shape]:
    """parse_json, and the body's Shape for the numeric fast paths."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        hint = "; send null for a missing value" if "NaN" in text or "expected a JSON value" in text else ""
        raise RequestError(f"the body is not valid JSON: {text}{hint}") from None
    shape = Shape.of(raw)
    if shape.colons != _keys(value):  # cheap: equal counts prove there are no duplicates
        _refuse_duplicate_keys(raw)
    return value, shape


def _keys(value: Any) -> int:
    """Keys in every object of a parsed document, not looking inside lists that start with a plain
    value or a list (an object in one of those makes the count short, which only sends the check
    down the precise path)."""
    if isinstance(value, dict):
        return len(value) + sum(_keys(v) for v in value.values() if isinstance(v, dict | list))
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return sum(_keys(v) for v in value if isinstance(v, dict | list))
    return 0


def _plain_numbers(shape: Shape, document: Any) -> bool:
    """True when no list of numbers in `document` can hold a string or a boolean: no true/false is
    written and every quote belongs to a key or to a string outside such lists. Then
    `np.array(values, dtype=float64)` is exact (it would otherwise turn "1.5" and true into numbers),
    which saves a type-sniffing pass over large bodies."""
    return not shape.bools and shape.quotes == 2 * _strings(document)


def _strings(value: Any) -> int:
    """Keys and string values, not looking inside lists that start with a number or a list (an
    uncounted string in one of those makes the total short, which only disables the fast path)."""
    if isinstance(value, str):
        return 1
    if isinstance(value, dict):
        return len(value) + sum(_strings(v) for v in value.values() if isinstance(v, str | dict | list))
    if isinstance(value, list) and value and isinstance(value[0], str | dict):
        return sum(_strings(v) for v in value if isinstance(v, str | dict | list))
    return 0


def _floats(values: list, plain: bool) -> np.ndarray | None:
    """`values` (nested lists of JSON numbers, null for missing) as float64 in one C pass, when
    `_plain_numbers` vouched for them; None when that is not known or they are ragged."""
    first = values
    while isinstance(first, list) and first:
        first = first[0]
    if not plain or isinstance(first, bool) or not isinstance(first, int | float):
        return None
    try:
        return np.array(values, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):  # ragged, or an object among the numbers
        return None


def _refuse_duplicate_keys(raw: bytes) -> None:
    import json

    def pairs(items: list[tuple[str, Any]]) -> dict:
        seen = set()
        for key, _ in items:
            if key in seen:
                raise RequestError(f"the JSON body repeats the key {key!r} in one object; each key once")
            seen.add(key)
        return dict(items)

    with contextlib.suppress(RecursionError):  # orjson already accepted its depth
        json.loads(raw, object_pairs_hook=pairs)


# -- Open Inference Protocol --------------------------------------------------------------------


def parse_v2(body: bytes, header_length: str | None, inputs) -> tuple[Rows, dict]:
    """(rows, request JSON) from a V2 infer request, JSON-only or with binary tensors."""
    inputs = Signature.of(inputs)
    if header_length is not None:
        if not header_length.strip().isdigit():
            raise RequestError(f"Inference-Header-Content-Length must be an integer; got {header_length!r}")
        split = int(header_length)
        if not 0 < split <= len(body):
            raise RequestError(f"Inference-Header-Content-Length {split} is outside the body ({len(body)} bytes)")
        header, binary = body[:split], memoryview(body)[split:]
    else:
        header, binary = body, memoryview(b"")
    request, shape = parse_json_shaped(header)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise RequestError('a V2 infer request is a JSON object with a non-empty "inputs" list')
    _object_or_absent(request.get("parameters"), "parameters")
    if "id" in request and not isinstance(request["id"], str):
        raise RequestError('"id" must be a string')
    _check_outputs(request.get("outputs"))
    scan_bools = shape.bools
    plain = _plain_numbers(shape, request)
    tensors: dict[str, tuple[np.ndarray, str]] = {}
    offset = 0
    for index, spec in enumerate(request["inputs"]):
        name, array, datatype, offset = _v2_tensor(spec, index, binary, offset, scan_bools, plain)
        if name in tensors:
            raise RequestError(f"inputs[{index}]: the input {name!r} is given twice")
        tensors[name] = (array, datatype)
    if offset != len(binary):
        raise RequestError(f"{len(binary) - offset} bytes of binary data belong to no input (check binary_data_size)")
    if inputs.numeric:
        return _v2_matrix(tensors, inputs), request
    return _v2_table(tensors, inputs), request


def _object_or_absent(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f'"{where}" must be an object; got {type(value).__name__}')
    return value


def _check_outputs(wanted: Any) -> None:
    if wanted is None:
        return
    if not isinstance(wanted, list):
        raise RequestError('"outputs" must be a list of {"name": ...} objects')
    for i, spec in enumerate(wanted):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise RequestError(f'outputs[{i}] must be an object with a "name"')
        _object_or_absent(spec.get("parameters"), f"outputs[{i}].parameters")


def _v2_tensor(spec: Any, index: int, binary: memoryview, offset: int, scan_bools: bool,
               plain: bool = False) -> tuple[str, np.ndarray, str, int]:  # fmt: skip
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise RequestError(f"{where} must be an object with name, shape, datatype and data")
    name, shape, datatype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    if not isinstance(name, str):
        raise RequestError(f"{where}.name must be a string")
    where = f"{where} ({name})"
    if not (isinstance(shape, list) and 1 <= len(shape) <= MAX_DIMS
            and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < MAX_DIM for d in shape)):  # fmt: skip
        raise RequestError(f"{where}.shape must be a list of 1 or {MAX_DIMS} non-negative integers "
                           f"([rows] or [rows, columns]); got {_short(shape)}")  # fmt: skip
    if datatype not in DATATYPES:
        raise RequestError(f"{where}.datatype must be one of {', '.join(DATATYPES)}; got {_short(datatype)}")
    count = math.prod(shape)  # Python integers: no int64 wrap-around
    parameters = _object_or_absent(spec.get("parameters"), f"{where}.parameters")
    size = parameters.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RequestError(f"{where}: binary_data_size must be a non-negative integer; got {_short(size)}")
        if offset + size > len(binary):
            raise RequestError(f"{where}: the body ends before its {size} bytes of binary data")
        chunk = binary[offset : offset + size]
        if datatype == "BYTES":
            array = _bytes_elements(chunk, count, where)
        else:
            dtype = np.dtype(V2_TO_NUMPY[datatype])
            if size != count * dtype.itemsize:
                raise RequestError(f"{where}: binary_data_size {size} does not match shape {shape} of {datatype} "
                                   f"({count * dtype.itemsize} bytes)")  # fmt: skip
            array = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
        return name, array.reshape(shape), datatype, offset + size
    if "data" not in spec:
        raise RequestError(f'{where} has neither "data" nor parameters.binary_data_size')
    data = spec["data"]
    if not isinstance(data, list):
        raise RequestError(f"{where}.data must be a list of values")
    array = _floats(data, plain) if datatype in ("FP64", "FP32", "FP16") else None
    if array is not None:
        array = array.astype(V2_TO_NUMPY[datatype], copy=False)
    elif datatype == "BYTES":
        array = _text_array(data, where)
    else:
        array = _number_array(data, datatype, where, scan_bools)
    if array.size != count:
        raise RequestError(f"{where}: shape {shape} needs {count} values; data has {array.size}")
    return name, array.reshape(shape), datatype, offset


def _number_array(data: list, datatype: str, where: str, scan_bools: bool) -> np.ndarray:
    """The values of a numeric (or BOOL) tensor, type-checked: JSON numbers, or null for missing."""
    try:
        array = np.array(data)
    except (ValueError, OverflowError):
        raise RequestError(f"{where}.data is not a regular array (nested lists of different lengths)") from None
    kind = array.dtype.kind
    if datatype == "BOOL":
        if kind != "b" and not (kind in "iu" and array.size and np.isin(array, (0, 1)).all()):
            raise RequestError(f"{where}.data must hold true/false for datatype BOOL")
        return array.astype(np.bool_)
    if kind == "b" or (scan_bools and kind in "iuf" and _has_bool(data)):
        raise RequestError(f"{where}.data holds true/false; {datatype} needs numbers")
    if kind in "US":
        raise RequestError(f"{where}.data holds text ({_short(array.ravel()[0])}); {datatype} needs numbers")
    if kind == "O":  # null among numbers, or mixed types
        array = _numbers_with_nulls(array, where, datatype)
    elif kind == "f" and datatype.startswith(("INT", "UINT")) and not np.all(np.isfinite(array) & (array % 1 == 0)):
        raise RequestError(f"{where}.data holds fractions; datatype {datatype} takes whole numbers")
    if datatype.startswith(("INT", "UINT")) and kind in "iu":
        info = np.iinfo(V2_TO_NUMPY[datatype])
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise RequestError(f"{where}.data holds values outside the {datatype} range")
    return array.astype(np.float64) if kind == "O" else array.astype(V2_TO_NUMPY[datatype])


def _numbers_with_nulls(array: np.ndarray, where: str, datatype: str) -> np.ndarray:
    flat = array.ravel()
    out = np.empty(flat.size, dtype=np.float64)
    for i, value in enumerate(flat):
        if value is None:
            out[i] = np.nan
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[i] = value
        else:
            raise RequestError(f"{where}.data[{i}] is {_short(value)}; {datatype} needs numbers (null for missing)")
    return out.reshape(array.shape)


def _has_bool(data: list) -> bool:
    stack = [data]
    while stack:
        items = stack.pop()
        for value in items:
            if value is True or value is False:
                return True
            if isinstance(value, list):
                stack.append(value)
    return False


def _text_array(data: list, where: str) -> np.ndarray:
    flat: list = []
    stack = [iter(data)]
    while stack:  # row-major flattening of nested lists
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            if value is not None and not isinstance(value, str):
                raise RequestError(f"{where}.data holds {_short(value)}; BYTES needs strings (null for missing)")
            flat.append(value)
        else:
            stack.pop()
    return np.asarray(flat, dtype=object)


def _bytes_elements(chunk: memoryview, count: int, where: str) -> np.ndarray:
    """BYTES binary data: each element a 4-byte little-endian length, then UTF-8 text."""
    out, pos = [], 0
    raw = bytes(chunk)
    for _ in range(count):
        if pos + 4 > len(raw):
            raise RequestError(f"{where}: the BYTES data ends before its {count} elements")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise RequestError(f"{where}: a BYTES element runs past the tensor's data")
        try:
            out.append(raw[pos : pos + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(f"{where}: a BYTES element is not valid UTF-8 text") from None
        pos += size
    if pos != len(raw):
        raise RequestError(f"{where}: {len(raw) - pos} bytes of BYTES data belong to no element")
    return np.asarray(out, dtype=object)


def _v2_matrix(tensors: dict[str, tuple[np.ndarray, str]], inputs: Signature) -> np.ndarray:
    names = inputs.names
    for name, (_, datatype) in tensors.items():
        if datatype in ("BYTES", "BOOL"):
            raise RequestError(f"input {name!r} is {datatype}; this model takes numbers (FP32, FP64, INT64, ...)")
    if len(tensors) == 1 and next(iter(tensors)) not in names:
        name, (array, _) = next(iter(tensors.items()))
        if name != "input":
            raise RequestError(f'unknown input {name!r}; send one tensor named "input" of shape [rows, '
                               f"{len(names)}], or one tensor per input ({', '.join(names[:4])}, ...)")  # fmt: skip
        if array.ndim == 1 and array.shape[0] == len(names):
            array = array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != len(names):
            raise RequestError(f'input "input" must have shape [rows, {len(names)}]; got {list(array.shape)}')
        return array.astype(np.float64, copy=False)
    _known(tensors, names)
    columns = [_one_column(tensors[n][0], n) for n in names]
    if len({len(c) for c in columns}) != 1:
        raise RequestError("the inputs have different numbers of rows")
    return np.column_stack(columns).astype(np.float64, copy=False)


def _v2_table(tensors: dict[str, tuple[np.ndarray, str]], inputs: Signature) -> Table:
    names = inputs.names
    _known(tensors, names)
    columns = {}
    for spec in inputs:
        array, datatype = tensors[spec.name]
        values = _one_column(array, spec.name)
        if spec.kind in ("number", "bool") and datatype == "BYTES":
            raise RequestError(
                f"input {spec.name!r} is BYTES; it takes {'numbers' if spec.kind == 'number' else 'BOOL'}"
            )
        if spec.kind == "number" and datatype == "BOOL":
            raise RequestError(f"input {spec.name!r} is BOOL; it takes numbers")
        if spec.kind == "datetime" and datatype != "BYTES":
            raise RequestError(f"input {spec.name!r} takes dates as BYTES (ISO 8601 text); got {datatype}")
        columns[spec.name] = _column_values(values, spec)
    sizes = {len(c) for c in columns.values()}
    if len(sizes) != 1:
        raise RequestError("the inputs have different numbers of rows")
    return Table(columns, sizes.pop())


def _known(tensors: dict, names: list[str]) -> None:
    unknown = [n for n in tensors if n not in names]
    if unknown:
        raise RequestError(f"unknown input(s) {unknown[:5]}; inputs are named after the model's columns: "
                           f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")  # fmt: skip
    missing = [n for n in names if n not in tensors]
    if missing:
        raise RequestError(f"missing input(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")


def _one_column(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise RequestError(f"input {name!r} must have shape [rows] or [rows, 1]; got {list(array.shape)}")
    return array


def _column_values(values: np.ndarray, spec: Input) -> np.ndarray:
    """One input's values in the canonical form: float64 for numbers and booleans, objects otherwise."""
    if spec.kind in ("number", "bool"):
        if values.dtype.kind == "O":
            return _python_column(list(values), spec)
        return values.astype(np.float64)
    if values.dtype.kind != "O" and spec.role == "text":
        raise RequestError(f"input {spec.name!r} takes text (BYTES strings); got numbers")
    if values.dtype.kind != "O":  # numbers sent for a category input (zip codes): their text
        return np.asarray([None if isinstance(v, float) and math.isnan(v) else _text(v) for v in values.tolist()],
                          dtype=object)  # fmt: skip
    return values


def check_output_names(request: dict, available: list[str]) -> None:
    """Refuse, before the model runs, outputs the model does not have."""
    for spec in request.get("outputs") or []:
        if spec["name"] not in available:
            raise RequestError(f"unknown output {spec['name']!r}; this model has {', '.join(available)}")


def encode_v2(outputs: dict[str, np.ndarray], request: dict, model_name: str,
              model_version: str) -> tuple[bytes, int | None]:  # fmt: skip
    """The V2 response body, and the JSON header length when binary outputs follow it."""
    wanted = request.get("outputs")
    default_binary = bool((request.get("parameters") or {}).get("binary_data_output", False))
    if wanted is None:
        selection = [(name, default_binary) for name in outputs]
    else:
        selection = []
        for spec in wanted:
            if spec["name"] not in outputs:
                raise RequestError(f"unknown output {spec['name']!r}; this model has {', '.join(outputs)}")
            binary = (spec.get("parameters") or {}).get("binary_data", default_binary)
            selection.append((spec["name"], bool(binary)))
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
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


_V2_NAMES = {np.dtype(numpy_type): name for name, numpy_type in V2_TO_NUMPY.items()}


def v2_datatype(dtype: np.dtype) -> str:
    if dtype.kind in ("U", "S", "O"):
        return "BYTES"
    return _V2_NAMES.get(np.dtype(dtype), "FP64")


def input_datatype(spec: Input) -> str:
    """The V2 datatype an input is sent as."""
    if spec.kind == "number":
        return "INT64" if (spec.dtype or "").startswith(("int", "uint")) else "FP64"
    return {"bool": "BOOL"}.get(spec.kind, "BYTES")


def _to_bytes(values: np.ndarray) -> bytes:
    if values.dtype.kind in ("U", "S", "O"):  # BYTES: each element as a 4-byte little-endian length + bytes
        parts = []
        for item in values.ravel():
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()


# -- MLflow scoring -----------------------------------------------------------------------------


def parse_mlflow(body: bytes, content_type: str, inputs) -> Rows:
    """The rows of an MLflow `/invocations` request (JSON or CSV)."""
    inputs = Signature.of(inputs)
    kind = content_type.split(";")[0].strip().lower()
    if kind == "text/csv":
        return _csv(body, inputs)
    if kind not in ("application/json", ""):
        raise RequestError(f"Content-Type must be application/json or text/csv; got {content_type[:80]!r}", status=415)
    payload, shape = parse_json_shaped(body)
    scan_bools = shape.bools  # without true/false written no value can be a boolean

    def plain() -> bool:  # a walk over the document: only numeric rows use it (not records, columns, tables)
        return _plain_numbers(shape, payload)

    if not isinstance(payload, dict):
        raise RequestError("the JSON body must be an object with one of dataframe_split, dataframe_records, "
                           "instances, inputs")  # fmt: skip
    keys = [k for k in MLFLOW_KEYS if k in payload]
    extra = [k for k in payload if k not in MLFLOW_KEYS and k != "params"]
    if len(keys) != 1 or extra:
        raise RequestError(f"the JSON body needs exactly one of {', '.join(MLFLOW_KEYS)} (and optionally params); "
                           f"got {sorted(payload)[:6] or 'none'}")  # fmt: skip
    key, value = keys[0], payload[keys[0]]
    names = inputs.names
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise RequestError('dataframe_split must be {"columns": [...], "data": [[...], ...]}')
        unknown = [k for k in value if k not in ("columns", "data", "index")]
        if unknown:
            raise RequestError(f"dataframe_split has unknown keys {unknown}; expected columns, data and index")
        columns = value.get("columns")
        if columns is None:
            return _from_rows(value["data"], names, inputs, key, scan_bools, plain)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise RequestError("dataframe_split.columns must be a list of column names")
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise RequestError(f"dataframe_split.columns names {duplicated[:5]} more than once; each column once")
        return _from_rows(value["data"], columns, inputs, key, scan_bools, plain)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return _from_records(value, inputs, key)
    if key == "dataframe_records":
        if not isinstance(value, list) or not value:
            raise RequestError("dataframe_records must be a non-empty list of {column: value} objects")
        return _from_records(value, inputs, key)
    if isinstance(value, dict):  # {"inputs": {"column": [values], ...}}
        return _from_columns(value, inputs, key)
    if not isinstance(value, list):
        raise RequestError(f"{key} must be a list of rows, a list of records or an object of columns")
    return _from_rows(value, names, inputs, key, scan_bools, plain)


def _from_rows(rows: Any, columns: list[str], inputs: Signature, key: str, scan_bools: bool = True,
               plain: Callable[[], bool] = lambda: False) -> Rows:  # fmt: skip
    """Rows as lists whose values follow `columns` (the model's input order when none were given)."""
    if not isinstance(rows, list) or not rows:
        raise RequestError(f"{key} has no rows")
    if inputs.numeric:
        matrix = _number_rows(rows, len(columns), key, scan_bools, plain())
        if matrix is not None:
            names = inputs.names
            _columns_present(columns, names)
            if columns == names:
                return matrix
            position = {c: j for j, c in enumerate(columns)}
            return matrix[:, [position[n] for n in names]]
    if not all(isinstance(r, list) for r in rows):
        if len(columns) == 1:
            rows = [[r] for r in rows]
        else:
            raise RequestError(f"{key} must be a list of rows, each a list of {len(columns)} values")
    bad = next((i for i, r in enumerate(rows) if len(r) != len(columns)), None)
    if bad is not None:
        raise RequestError(f"{key} row {bad} has {len(rows[bad])} values; expected {len(columns)} (one per column: "
                           f"{', '.join(columns[:6])}{' ...' if len(columns) > 6 else ''})")  # fmt: skip
    return _from_columns({c: [r[j] for r in rows] for j, c in enumerate(columns)}, inputs, key)


def _number_rows(rows: list, width: int, key: str, scan_bools: bool = True,
                 plain: bool = False) -> np.ndarray | None:  # fmt: skip
    """The fast path: a regular list of lists of JSON numbers -> a float64 matrix; None otherwise
    (the column path then finds and names the problem)."""
    matrix = _floats(rows, plain)
    if matrix is None:
        try:
            matrix = np.array(rows)
        except (ValueError, OverflowError):
            return None
    if matrix.dtype.kind not in "iuf":
        return None
    if matrix.ndim == 1 and matrix.shape[0] == width:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise RequestError(f"{key} must be rows of {width} values (one per column); got shape {list(matrix.shape)}")
    if scan_bools and _has_bool(rows):
        return None
    return matrix.astype(np.float64, copy=False)


def _from_records(records: list, inputs: Signature, key: str) -> Rows:
    if not all(isinstance(r, dict) for r in records):
        raise RequestError(f"{key} must be a list of {{column: value}} objects")
    names = inputs.names
    if inputs.numeric:  # fast path: every record has every input as a number
        try:
            matrix = np.array([[record[n] for n in names] for record in records])
        except (KeyError, ValueError, OverflowError):
            matrix = None
        if matrix is not None and matrix.dtype.kind in "iuf" and matrix.ndim == 2 and not _has_bool(
                [list(r.values()) for r in records]):  # fmt: skip
            return matrix.astype(np.float64, copy=False)
    present = set().union(*(r.keys() for r in records))
    _columns_present(list(present), names)
    return _from_columns({n: [r.get(n) for r in records] for n in names}, inputs, key)


def _from_columns(columns: dict, inputs: Signature, key: str) -> Rows:
    names = inputs.names
    _columns_present(list(columns), names)
    lists = {}
    for name in names:
        values = columns[name]
        if not isinstance(values, list):
            values = [values]
        lists[name] = values
    sizes = {len(v) for v in lists.values()}
    if len(sizes) != 1:
        raise RequestError(f"{key}: the columns have different numbers of values")
    rows = sizes.pop()
    if rows == 0:
        raise RequestError("the request has no rows")
    typed = {s.name: _python_column(lists[s.name], s) for s in inputs}
    if inputs.numeric:
        return np.column_stack([typed[n] for n in names])
    return Table(typed, rows)


def _columns_present(given: list[str], names: list[str]) -> None:
    if given is names or given == names:
        return
    present = set(given)
    missing = [n for n in names if n not in present]
    if missing:
        raise RequestError(
            f"missing column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}; the model takes "
            f"{len(names)} columns: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"
        )


def _python_column(values: list, spec: Input) -> np.ndarray:
    """JSON values for one input, checked against its kind: numbers (null: missing), true/false,
    text (numbers become their text) or dates as text."""
    if spec.kind == "number":
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            if v is None:
                out[i] = np.nan
            elif isinstance(v, int | float) and not isinstance(v, bool):
                out[i] = v
            else:
                raise RequestError(f"column {spec.name!r} must hold numbers; row {i} holds {_short(v)}")
        return out
    if spec.kind == "bool":
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            if v is None:
                out[i] = np.nan
            elif isinstance(v, bool):
                out[i] = float(v)
            elif isinstance(v, str) and v.strip().lower() in ("true", "false"):
                out[i] = float(v.strip().lower() == "true")
            else:
                raise RequestError(f"column {spec.name!r} must hold true/false; row {i} holds {_short(v)}")
        return out
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is None or isinstance(v, str):
            out[i] = v
        elif spec.kind == "string" and spec.role != "text" and isinstance(v, int | float) and not isinstance(v, bool):
            out[i] = _text(v)  # a category sent as a number (a zip code); free text for a text model never is
        else:
            what = "dates as ISO 8601 text" if spec.kind == "datetime" else "text"
            raise RequestError(f"column {spec.name!r} must hold {what}; row {i} holds {_short(v)}")
    return out


def _csv(body: bytes, inputs: Signature) -> Rows:
    """CSV with a header row, read strictly: every row as wide as the header, UTF-8 text."""
    import pyarrow as pa
    from pyarrow import csv

    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the CSV body is not UTF-8 text (byte {exc.start})") from None
    text_inputs = {i.name: pa.string() for i in inputs if i.kind in ("string", "datetime")}
    try:
        table = csv.read_csv(
            io.BytesIO(body),
            read_options=csv.ReadOptions(use_threads=False),
            convert_options=csv.ConvertOptions(strings_can_be_null=True, column_types=text_inputs),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise RequestError(f"the CSV body cannot be read: {str(exc).splitlines()[0]}") from None
    duplicated = sorted({h for h in table.column_names if table.column_names.count(h) > 1})
    if duplicated:
        raise RequestError(f"the CSV header names {duplicated[:5]} more than once; each column once")
    if table.num_rows == 0:
        raise RequestError("the request has no rows")
    columns = {}
    for spec in inputs:
        if spec.name not in table.column_names:
            _columns_present(table.column_names, inputs.names)
        column = table.column(spec.name)
        kind = column.type
        if spec.kind == "number" and (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
        ):
            columns[spec.name] = column.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        else:
            columns[spec.name] = _python_column(column.to_pylist(), spec)
    if inputs.numeric:
        return np.column_stack([columns[i.name] for i in inputs])
    return Table(columns, table.num_rows)


def mlflow_response(predictions: np.ndarray) -> bytes:
    return orjson.dumps({"predictions": predictions.tolist()})


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
