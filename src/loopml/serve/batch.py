"""`loopml predict`: batch inference over a large file in chunks, with constant memory.

Parquet is read row group by row group through pyarrow and written with a ParquetWriter;
CSV is streamed with pandas' chunked reader. The input file is only read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.data.io import table_format
from loopml.errors import DataError
from loopml.progress import progress_bar
from loopml.serve.protocols import RequestError, frame_matrix
from loopml.serve.runtime import ModelRuntime, ModelSource, resolve_version


def predict_file(source: ModelSource, input_path: str, output_path: str, chunk_rows: int = 65_536,
                 proba: bool = False, show_progress: bool = True) -> dict[str, Any]:  # fmt: skip
    if Path(input_path).resolve() == Path(output_path).resolve():
        raise DataError(f"--output {output_path} is the input file; loopml never overwrites input data")
    fmt_in, fmt_out = table_format(input_path), table_format(output_path)
    if "://" not in input_path and not Path(input_path).is_file():
        raise DataError(f"{input_path}: no such file")
    started = time.perf_counter()
    version = resolve_version(source, None)
    runtime = ModelRuntime.load(source, version)
    chunks, total = _chunks(input_path, fmt_in, chunk_rows)
    writer = _Writer(output_path, fmt_out)
    rows = 0
    progress = progress_bar(show_progress)
    with progress:
        task = progress.add_task(f"predict {Path(input_path).name}", total=total)
        try:
            for frame in chunks:
                try:
                    matrix = frame_matrix(frame, runtime.features)
                except RequestError as exc:
                    raise DataError(f"{input_path} (rows {rows}-{rows + len(frame) - 1}): {exc}") from None
                outputs = runtime.predict(matrix)
                frame = frame.assign(prediction=outputs["predict"])
                if proba and "probabilities" in outputs:
                    for i, label in enumerate(runtime.classes):
                        frame[f"proba_{label}"] = outputs["probabilities"][:, i]
                writer.write(frame)
                rows += len(frame)
                progress.update(task, advance=len(frame))
        finally:
            writer.close()
    return {"rows": rows, "output": output_path, "model": runtime.name, "version": runtime.version,
            "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip


def _chunks(path: str, fmt: str, chunk_rows: int):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read it as parquet ({exc})") from None
        return (batch.to_pandas() for batch in parquet.iter_batches(batch_size=chunk_rows)), parquet.metadata.num_rows
    return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", chunksize=chunk_rows), None


class _Writer:
    def __init__(self, path: str, fmt: str):
        self.path, self.fmt = path, fmt
        self._parquet = None
        self._first = True
        if "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        else:
            frame.to_csv(self.path, sep="\t" if self.fmt == "tsv" else ",", index=False,
                         mode="w" if self._first else "a", header=self._first)  # fmt: skip
        self._first = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
