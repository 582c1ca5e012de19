"""`loopml predict`: batch inference over a large file in chunks, with constant memory.

Parquet is read row group by row group through pyarrow and written with a ParquetWriter; CSV is
streamed with pandas' chunked reader (encoding, delimiter and decimal detected). The input is only
read; the output is written under a temporary name and renamed at the end, and a writer never
replaces its input by any path (hard link, symlink, `file://` URL).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from loopml.data.io import CsvOptions, is_url, sniff_csv, table_format
from loopml.errors import DataError
from loopml.fileio import check_writable, disk_error, local_path, refuse_overwrite
from loopml.progress import progress_bar
from loopml.serve.runtime import RegistryLoader
from loopml.uri import ModelRef
from loopml_runtime import InputError


@dataclass(frozen=True)
class PredictResult:
    rows: int
    output: str
    model: str
    version: str
    seconds: float


def predict_file(ref: ModelRef, input_path: str, output_path: str, tracking_uri: str | None = None,
                 chunk_rows: int = 65_536, proba: bool = False, show_progress: bool = True,
                 options: CsvOptions | None = None) -> PredictResult:  # fmt: skip
    fmt_in, fmt_out = table_format(input_path), table_format(output_path)
    if not is_url(input_path) and not Path(input_path).is_file():
        raise DataError(f"{input_path}: no such file")
    refuse_overwrite(output_path, [input_path], "--output")
    check_writable(output_path, "--output")
    if chunk_rows < 1:
        raise DataError(f"--chunk-rows must be at least 1; got {chunk_rows}")
    started = time.perf_counter()
    loader = RegistryLoader(tracking_uri)
    version = loader.resolve(ref)
    runtime = loader.load(ref.pinned(version), version)
    predictor = runtime.predictor
    chunks, total = _chunks(input_path, fmt_in, chunk_rows, options or CsvOptions())
    rows = 0
    progress = progress_bar(show_progress)
    with progress, _Writer(output_path, fmt_out) as writer:
        task = progress.add_task(f"predict {Path(input_path).name}", total=total)
        for frame in chunks:
            try:
                labels, scores = predictor.infer(frame, proba=proba)
            except InputError as exc:
                raise DataError(f"{input_path} (rows {rows}-{rows + len(frame) - 1}): {exc}") from None
            frame = frame.assign(prediction=labels)
            if proba and scores is not None:
                for i, label in enumerate(runtime.classes):
                    frame[f"proba_{label}"] = scores[:, i]
            writer.write(frame)
            rows += len(frame)
            progress.update(task, advance=len(frame))
    return PredictResult(rows, output_path, runtime.name, runtime.version, round(time.perf_counter() - started, 3))


def _chunks(path: str, fmt: str, chunk_rows: int, options: CsvOptions):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read it as parquet ({exc})") from None
        return (batch.to_pandas() for batch in parquet.iter_batches(batch_size=chunk_rows)), parquet.metadata.num_rows
    csv = sniff_csv(path, fmt, options)

    def read():
        try:
            yield from pd.read_csv(path, sep=csv.delimiter, decimal=csv.decimal, encoding=csv.encoding,
                                   chunksize=chunk_rows, index_col=False)  # fmt: skip
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise DataError(f"{path}: cannot read it as CSV ({str(exc).splitlines()[0]}); set --encoding, or fix "
                            "the row it names") from None  # fmt: skip

    return read(), None


class _Writer:
    """Chunks to a temporary file beside the output, renamed into place when all went well."""

    def __init__(self, path: str, fmt: str):
        self.path, self.fmt = path, fmt
        self._parquet = None
        self._first = True
        local = local_path(path)
        if local is None:  # a remote output is written in place (no rename there)
            self.target, self.tmp = None, path
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".tmp", dir=local.parent)
            os.close(fd)
            self.target, self.tmp = local, tmp

    def __enter__(self) -> _Writer:
        return self

    def write(self, frame: pd.DataFrame) -> None:
        try:
            if self.fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(frame, preserve_index=False)
                if self._parquet is None:
                    self._parquet = pq.ParquetWriter(self.tmp, table.schema)
                self._parquet.write_table(table.cast(self._parquet.schema))
            else:
                frame.to_csv(self.tmp, sep="\t" if self.fmt == "tsv" else ",", index=False,
                             mode="w" if self._first else "a", header=self._first)  # fmt: skip
        except OSError as exc:
            raise disk_error(self.path, exc) from None
        self._first = False

    def __exit__(self, kind, error, trace) -> None:
        try:
            if self._parquet is not None:
                self._parquet.close()
        except OSError as exc:
            error = error or disk_error(self.path, exc)
        if self.target is not None:
            if error is None:
                os.replace(self.tmp, self.target)
            else:
                Path(self.tmp).unlink(missing_ok=True)
        if isinstance(error, Exception) and kind is None:
            raise error
