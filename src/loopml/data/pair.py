"""Profiling two files for `loopml drift`: the reference fitted, the current counted on its grid.

Counting is many short NumPy calls, and several of them (bincount, the casts) hold the GIL:
a second thread only adds hand-offs (measured twice as slow on 2 cores). So on several cores
the columns of two local Parquet files are split across forked processes; each reads only its
own columns of both files (Parquet stores columns apart) and sends back small profiles. The
fork happens before any data is read: nothing big is shared, so no copy-on-write faults.
Anything else (CSV, URLs, one core, one column) is profiled in this process, the current
file read by Arrow's threads while the reference is fitted.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from loopml.data.io import CsvOptions, is_url, parquet_columns, read_arrow, table_format
from loopml.data.profile import Profile
from loopml.errors import ConfigError

MAX_WORKERS = 8
TEXT_COST = 0.3  # a dictionary-encoded text column costs about this share of a numeric one
WIDE = 1000  # columns past which the two files are read one after the other (memory, not speed, binds)


def profile_pair(reference: str, current: str, options: CsvOptions | None = None,
                 exclude: list[str] | None = None) -> tuple[Profile, Profile]:  # fmt: skip
    """The reference profile of `reference` and the counts of `current` on its grid (`exclude`d
    columns left out; a CSV read with `options`)."""
    options = options or CsvOptions()
    exclude = list(exclude or [])
    order, shares = _shares(reference, current, exclude)
    if len(shares) < 2:
        from concurrent.futures import ThreadPoolExecutor

        reference_table = _without(read_arrow(reference, options=options), exclude, reference)
        if reference_table.num_columns > WIDE:  # Arrow's per-column buffers: one wide table in memory at a time
            profile = Profile.fit(reference_table)
            del reference_table
            return profile, profile.count(read_arrow(current, options=options))
        with ThreadPoolExecutor(max_workers=1) as pool:  # Arrow reads the second file while the first is fitted
            later = pool.submit(read_arrow, current, None, options)
            profile = Profile.fit(reference_table)
            del reference_table
            return profile, profile.count(later.result())
    return _profile_in_processes(reference, current, order, shares)


def _without(table, exclude: list[str], path: str):
    unknown = [c for c in exclude if c not in table.column_names]
    if unknown:
        raise ConfigError(f"--exclude names {unknown}, which {path} lacks; its columns: {table.column_names[:8]}")
    return table.drop_columns(exclude) if exclude else table


def _shares(reference: str, current: str, exclude: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """The reference's columns, and the same split into balanced shares, one per worker process;
    no split unless both files are local Parquet and there are several cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    local_parquet = all(
        not is_url(p) and table_format(p) == "parquet" and os.path.exists(p) for p in (reference, current)
    )
    if cores < 2 or not local_parquet or not hasattr(os, "fork"):
        return [], []
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(reference)
    except (OSError, ValueError):
        return [], []  # read_arrow says what is wrong with it
    unknown = [c for c in exclude or [] if c not in schema.names]
    if unknown:
        raise ConfigError(f"--exclude names {unknown}, which {reference} lacks; its columns: {schema.names[:8]}")
    fields = [f for f in schema if f.name not in (exclude or [])]
    workers = min(cores, MAX_WORKERS, len(fields))
    shares: list[list[str]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for field in fields:  # each column to the least loaded share, in order: round robin for equal costs
        text = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
        least = loads.index(min(loads))
        shares[least].append(field.name)
        loads[least] += TEXT_COST if text else 1.0
    return [f.name for f in fields], shares


def _profile_share(reference: str, current: str, names: list[str], current_names: set[str]) -> tuple[Profile, Profile]:
    profile = Profile.fit(read_arrow(reference, columns=names))
    # at least one column, so the count knows the rows; a column the current lacks counts as nulls
    present = [n for n in names if n in current_names] or sorted(current_names)[:1]
    return profile, profile.count(read_arrow(current, columns=present))


def _profile_in_processes(
    reference: str, current: str, order: list[str], shares: list[list[str]]
) -> tuple[Profile, Profile]:
    import multiprocessing

    current_names = set(parquet_columns(current))  # once, here: a broken file fails before any fork
    context = multiprocessing.get_context("fork")
    children = []
    try:
        for share in shares[1:]:
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(target=_child, args=(sender, reference, current, share, current_names),
                                    daemon=True)  # fmt: skip
            with warnings.catch_warnings():  # the threads alive now are OpenBLAS's and Arrow's idle pools
                warnings.simplefilter("ignore", DeprecationWarning)
                child.start()
            sender.close()
            children.append((child, receiver, share))
        results = [_profile_share(reference, current, shares[0], current_names)]
        for child, receiver, share in children:
            results.append(_received(receiver, reference, current, share, current_names))
            child.join()
    finally:
        for child, receiver, _ in children:
            receiver.close()
            if child.is_alive():
                child.kill()
    fitted: dict[str, Any] = {}
    counted: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for profile, count in results:
        fitted.update(profile.columns)
        counted.update(count.columns)
        skipped.update(profile.skipped)
    kept = [n for n in order if n in fitted]
    return Profile({n: fitted[n] for n in kept}, skipped), Profile({n: counted[n] for n in kept}, skipped)


def _child(sender, reference: str, current: str, names: list[str], current_names: set[str]) -> None:
    try:
        profile, count = _profile_share(reference, current, names, current_names)
        sender.send(("ok", (profile.to_dict(), count.to_dict())))
    except BaseException as exc:  # sent to the parent, which raises it
        try:
            sender.send(("error", exc))
        except Exception:
            sender.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        sender.close()


def _received(receiver, reference: str, current: str, names: list[str], current_names: set[str]
              ) -> tuple[Profile, Profile]:  # fmt: skip
    try:
        status, payload = receiver.recv()
    except EOFError:  # the worker died (killed, out of memory): do its share here
        return _profile_share(reference, current, names, current_names)
    if status == "error":
        raise payload
    return Profile.from_dict(payload[0]), Profile.from_dict(payload[1])
