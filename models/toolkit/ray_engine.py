"""Critique a manifest on Ray Data: the records of ``critique --manifest``, from a laptop to a cluster.

The single-machine path (:func:`.manifest.critique_manifest`) is one process with a dispatcher; this is
the same work as a Ray Data pipeline, for when one machine is not enough:

1. **read** the manifest (JSONL, JSON, CSV, parquet; one file or a folder, local or any filesystem pyarrow
   opens, e.g. ``s3://``) in read tasks, with the single path's row rules (:func:`.manifest.manifest_row`,
   :func:`.manifest.row_cells`); rows whose id is already in the output are dropped here;
2. **fetch** the image bytes in CPU tasks (paths relative to the manifest's folder, URIs, embedded bytes);
3. **critique** in an actor pool: each actor builds its critic with the one factory
   (:func:`~rationalrewards.runtime.factory.build_critic`) from picklable specs -- a checkpoint on the
   actor's own GPU, or clients of a vLLM fleet -- decodes the images and runs them through a
   :class:`~.dispatch.Dispatcher` (so through ``Critic.prepare`` and ``Critic.parse``), writing each row
   with :func:`.manifest.output_record`: exactly the single path's record;
4. **write** each finished actor call (one block of ``batch_size`` rows) as one file,
   ``OUT/part-<hash of its ids>.jsonl``, written to a hidden temporary name and moved into place, so a
   file is whole or absent; failed rows go to ``OUT.errors/part-<hash>.jsonl`` (``{"id", "error"}`` like
   the single path's ``OUT.errors.jsonl``).

Resuming: a rerun reads the ids in ``OUT/part-*.jsonl``, skips them and retries the rest (the failed rows
too). A killed job loses the rows in flight (calls running or waiting for their write) and writes none
twice: a retried call has the same ids, so the same file name, and replaces its file. Ids must be unique
(checked before any critique). Ray is an optional extra: only this module imports it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import sys
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

from ..backends.base import GenerationOptions
from ..critic.images import ImageError
from ..critic.script import AnswerScript
from ..errors import RationalRewardsError
from ..judging.rubric import Task
from ..runtime.compat import DependencyError
from ..runtime.factory import CheckpointSpec, CriticSpec, ServerSpec, build_critic
from .dispatch import INPUT_ERRORS, Dispatcher
from .manifest import (ManifestReport, check_columns, manifest_row, output_record, row_cells, row_id, row_item,
                       row_where)
from .tables import TABLE_SUFFIXES, ImageFiles, TableError, cell_parts, decode_image, rows_from_stream

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy, Datasink
    from ray.data.block import BlockAccessor
    from ray.data.datasource import FileBasedDatasource
except ImportError:
    raise DependencyError("the Ray engine needs Ray Data: pip install \"ray[data]>=2.60,<3\" (or, in the pack's "
                          "folder, pip install -e \".[ray]\")") from None

log = logging.getLogger("RationalRewards")

PART_PREFIX, PART_SUFFIX = "part-", ".jsonl"
ROWS_PER_BLOCK = 1024
# What the read tasks hand on: the row, where it came from (the record's first keys), its task and image
# cells split into embedded bytes / path, and the first thing wrong with it.
ROW_SCHEMA = pa.schema([("id", pa.string()), ("prompt", pa.string()), ("where", pa.string()), ("task", pa.string()),
                        ("image_data", pa.binary()), ("image_path", pa.string()), ("image_error", pa.string()),
                        ("source_data", pa.binary()), ("source_path", pa.string()), ("source_error", pa.string()),
                        ("error", pa.string())])
FETCHED_SCHEMA = pa.schema([("id", pa.string()), ("prompt", pa.string()), ("where", pa.string()),
                            ("task", pa.string()), ("image", pa.binary()), ("image_name", pa.string()),
                            ("source", pa.binary()), ("source_name", pa.string()), ("error", pa.string())])
RESULT_SCHEMA = pa.schema([("id", pa.string()), ("record", pa.string()), ("error", pa.string())])


@dataclass(frozen=True)
class RayResources:
    """How the critique stage runs on Ray (what Ray users set on an actor pool).

    Args:
        actors: a fixed pool size, or ``(min, max)`` autoscaling bounds (``max`` None: as many as the
            cluster fits). Default: 1..as many as fit for checkpoints on GPUs, else 1.
        gpus_per_actor: GPUs each actor reserves (Ray pins them via CUDA_VISIBLE_DEVICES). Default: 1 for a
            checkpoint when the cluster has GPUs, else 0; 0 for server critics.
        cpus_per_actor: CPUs each actor reserves.
        batch_size: rows per actor call (a block of this many rows is written at a time). Default: the
            checkpoint's batch size, or ``concurrency_per_actor`` for server critics.
        concurrency_per_actor: server critics: requests in flight per actor (the actor's dispatcher limit;
            two batches run at once so the slots stay full). Default: 4 per server URL.
    """
    actors: int | tuple[int, int | None] | None = None
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    batch_size: int | None = None
    concurrency_per_actor: int | None = None


# -- files ------------------------------------------------------------------------------------------------

def _filesystem(uri: str, filesystem: "pafs.FileSystem | None" = None) -> tuple["pafs.FileSystem", str]:
    """(filesystem, path on it) for a local path or a URI pyarrow understands."""
    if filesystem is not None:
        return filesystem, uri
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def _part_files(fs: "pafs.FileSystem", folder: str) -> list[str]:
    info = fs.get_file_info(folder)
    if info.type == pafs.FileType.NotFound:
        return []
    if info.type != pafs.FileType.Directory:
        raise TableError(f"{folder} is a file; the Ray engine writes a folder of {PART_PREFIX}*{PART_SUFFIX} files "
                         "(the single-machine engine writes one file): give a folder for --out")
    found = fs.get_file_info(pafs.FileSelector(folder))
    return sorted(f.path for f in found if f.type == pafs.FileType.File
                  and f.base_name.startswith(PART_PREFIX) and f.base_name.endswith(PART_SUFFIX))


def _remove_leftovers(fs: "pafs.FileSystem", folder: str) -> int:
    """Delete the temporary files a killed run left in ``folder`` (one run per output folder at a time)."""
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return 0
    stale = [f.path for f in fs.get_file_info(pafs.FileSelector(folder))
             if f.base_name.startswith("." + PART_PREFIX) and f.base_name.endswith(".tmp")]
    for path in stale:
        fs.delete_file(path)
    return len(stale)


def output_files(out: str, filesystem: "pafs.FileSystem | None" = None) -> list[str]:
    """The finished part files of a Ray run's output folder (the records, one JSON line per row)."""
    fs, folder = _filesystem(out, filesystem)
    return _part_files(fs, folder)


# -- stage 1: read ------------------------------------------------------------------------------------------

class _ManifestSource(FileBasedDatasource):
    """Manifest rows (``ids_only``: just their ids) with the single path's rules, from any pyarrow filesystem;
    ``skip`` is an object ref of the ids to leave out (already written)."""

    def __init__(self, paths, *, task: Task | None = None, ids_only: bool = False, skip=None, **kwargs):
        super().__init__(paths, file_extensions=[s.lstrip(".") for s in TABLE_SUFFIXES], **kwargs)
        self.task, self.ids_only, self.skip = task, ids_only, skip

    def _open_input_source(self, filesystem, path, **open_args):
        return filesystem.open_input_file(path)      # parquet needs random access

    def _read_stream(self, f, path: str):
        skip = ray.get(self.skip) if self.skip is not None else None
        if self.ids_only and path.endswith(".parquet"):
            yield _parquet_ids(f, path)
            return
        rows: list[dict[str, Any]] = []
        for pos, raw in enumerate(rows_from_stream(f, path)):
            row = manifest_row(raw, pos, path)
            rows.append({"id": row.id} if self.ids_only else _read_row(row, self.task))
            if len(rows) >= ROWS_PER_BLOCK:
                yield _block(rows, skip, self.ids_only)
                rows = []
        if rows:
            yield _block(rows, skip, self.ids_only)


def _parquet_ids(f, path: str) -> "pa.Table":
    """The ids of a parquet manifest, reading only its id column (row numbers when it has none)."""
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(f)
    names = pf.schema_arrow.names
    check_columns(names, path)
    values = pf.read(columns=["id"]).column("id").to_pylist() if "id" in names else [None] * pf.metadata.num_rows
    return pa.table({"id": pa.array([row_id(v, pos) for pos, v in enumerate(values)], pa.string())})


def _read_row(row, task: Task | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id, "prompt": row.prompt,
                           "where": json.dumps(row_where(row), ensure_ascii=False)}
    try:
        row_task, image, source = row_cells(row, task)
    except INPUT_ERRORS as e:
        out["error"] = _error_text(e)
        return out
    out["task"] = row_task.value
    for name, cell in (("image", image), ("source", source)):
        if cell is None:
            continue
        try:
            out[f"{name}_data"], out[f"{name}_path"] = cell_parts(cell)
        except ImageError as e:
            out[f"{name}_error"] = _error_text(e)
    return out


def _block(rows: list[dict[str, Any]], skip, ids_only: bool) -> "pa.Table":
    table = pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string())]) if ids_only else ROW_SCHEMA)
    if skip is not None and len(skip):
        table = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=skip)))
    return table


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"      # as Outcome.error_text writes it


# -- stage 2: fetch -----------------------------------------------------------------------------------------

def _fetch(batch: "pa.Table", files: ImageFiles) -> "pa.Table":
    """Image bytes for every row still without an error (the image first, then the source, as the single
    path loads them) and the file names errors show; a missing file becomes the row's error."""
    out = []
    for r in batch.to_pylist():
        row = {k: r[k] for k in ("id", "prompt", "where", "task", "error")}
        for name in ("image", "source"):
            if row["error"]:
                break
            row["error"] = r[f"{name}_error"]      # a cell that holds no image
            data, path = r[f"{name}_data"], r[f"{name}_path"]
            if row["error"] or data is not None or path is None:
                row[name] = data
                continue
            try:
                row[name], row[f"{name}_name"] = files.read(path)
            except INPUT_ERRORS as e:
                row["error"] = _error_text(e)
        out.append(row)
    return pa.Table.from_pylist(out, schema=FETCHED_SCHEMA)


# -- stage 3: critique ------------------------------------------------------------------------------------

class _CritiqueActor:
    """One critic per actor, built by the factory from its specs; rows in, records or errors out."""

    def __init__(self, specs: tuple[CriticSpec, ...], script: AnswerScript | None, options: GenerationOptions,
                 weights, max_concurrency: int | None):
        critics = [build_critic(s) for s in specs]
        self.dispatcher = Dispatcher([c.with_script(script) for c in critics] if script else critics, max_concurrency)
        self.options, self.weights = options, weights

    def __call__(self, batch: "pa.Table") -> "pa.Table":
        rows = batch.to_pylist()
        results: list[dict[str, Any]] = [{"id": r["id"], "record": None, "error": r["error"]} for r in rows]
        todo = [i for i, r in enumerate(rows) if not r["error"]]
        jobs = [partial(_item, rows[i]) for i in todo]
        for outcome in self.dispatcher.run(jobs, self.options):
            i = todo[outcome.index]
            if outcome.ok:
                record = output_record(outcome, self.weights, **json.loads(rows[i]["where"]))
                results[i]["record"] = json.dumps(record, ensure_ascii=False, allow_nan=False)
            else:
                results[i]["error"] = outcome.error_text
        return pa.Table.from_pylist(results, schema=RESULT_SCHEMA)


def _item(row: dict[str, Any]):
    image = _decode(row, "image")      # the image first, as the single path loads it
    source = _decode(row, "source") if row["source"] is not None else None
    return row_item(Task(row["task"]), row["prompt"], image, source)


def _decode(row: dict[str, Any], name: str):
    return decode_image(row[name], *([row[f"{name}_name"]] if row[f"{name}_name"] else []))


# -- stage 4: write -----------------------------------------------------------------------------------------

class _PartsSink(Datasink):
    """Each block's records as one whole file (temporary name, then moved), named by a hash of its ids."""

    def __init__(self, fs: "pafs.FileSystem", out: str, errors: str):
        self.fs, self.out, self.errors = fs, out, errors
        self.written = 0
        self.failed: list[dict[str, str]] = []

    def write(self, blocks, ctx) -> dict[str, Any]:
        ok: list[tuple[str, str]] = []
        bad: list[dict[str, str]] = []
        for block in blocks:
            for r in BlockAccessor.for_block(block).to_arrow().to_pylist():
                if r["record"] is not None:
                    ok.append((r["id"], r["record"]))
                else:
                    bad.append({"id": r["id"], "error": r["error"]})
        if ok:
            self._put(self.out, [i for i, _ in ok], "".join(line + "\n" for _, line in ok))
        if bad:
            self._put(self.errors, [b["id"] for b in bad],
                      "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in bad))
        return {"written": len(ok), "failed": bad}

    def _put(self, folder: str, ids: list[str], text: str) -> None:
        name = PART_PREFIX + hashlib.sha1("\n".join(sorted(ids)).encode("utf-8")).hexdigest()[:20] + PART_SUFFIX
        final = posixpath.join(folder, name)
        tmp = posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")   # listings skip dot files
        self.fs.create_dir(folder, recursive=True)
        with self.fs.open_output_stream(tmp) as f:
            f.write(text.encode("utf-8"))
        self.fs.move(tmp, final)

    def on_write_complete(self, write_result) -> None:
        for r in write_result.write_returns:
            self.written += r["written"]
            self.failed.extend(r["failed"])


# -- the run ------------------------------------------------------------------------------------------------

def _ids(ds: "ray.data.Dataset") -> "pa.ChunkedArray":
    tables = [b for b in ds.iter_batches(batch_format="pyarrow", batch_size=None)]
    if not tables:
        return pa.chunked_array([], pa.string())
    return pa.concat_tables(tables).column("id")


def _check_unique(ids: "pa.ChunkedArray", manifest: str) -> None:
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    counts = pc.value_counts(ids)
    dup = next(c["values"] for c in counts.to_pylist() if c["counts"] > 1)
    raise TableError(f"{manifest}: id {dup!r} appears more than once; ids must be unique (a resumed run skips "
                     "the ids it has written; a manifest of several files needs an 'id' column)")


def _resources(specs: Sequence[CriticSpec], res: RayResources) -> tuple[dict[str, Any], int, int | None]:
    """(map_batches keywords for the actor pool, rows per call, dispatcher limit per actor)."""
    server = isinstance(specs[0], ServerSpec)
    gpus = res.gpus_per_actor
    if gpus is None:
        gpus = 0.0 if server else (1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0)
    actors = res.actors if res.actors is not None else ((1, None) if gpus > 0 else 1)
    if isinstance(actors, int):
        pool: dict[str, Any] = {"size": actors}
    else:
        pool = {"min_size": actors[0], "max_size": actors[1]}
    concurrency = res.concurrency_per_actor
    if server:
        concurrency = concurrency or sum(s.max_concurrency for s in specs)
        pool.update(max_concurrent_calls_per_actor=2, enable_true_multi_threading=True)
        batch = res.batch_size or concurrency
    else:
        batch = res.batch_size or specs[0].batch_size
    kwargs = {"compute": ActorPoolStrategy(**pool), "num_cpus": res.cpus_per_actor, "batch_size": batch}
    if gpus > 0:
        kwargs["num_gpus"] = gpus
    return kwargs, batch, concurrency


def _unwrap(error: BaseException) -> BaseException:
    """The exception a Ray task raised (Ray wraps it once or twice)."""
    seen = error
    for _ in range(4):
        inner = getattr(seen, "cause", None) or seen.__cause__
        if isinstance(seen, ray.exceptions.RayTaskError) and inner is not None:
            seen = inner
        elif type(seen).__name__ == "UserCodeException" and seen.__cause__ is not None:
            seen = seen.__cause__
        else:
            break
    return seen


def critique_manifest_ray(manifest: str | Path, out: str | Path, specs: CriticSpec | Sequence[CriticSpec], *,
                          options: GenerationOptions | None = None, task: Task | str | None = None,
                          weights: str | dict[str, float] | None = "equal", script: AnswerScript | None = None,
                          resources: RayResources = RayResources(), progress: bool = True,
                          filesystem: "pafs.FileSystem | None" = None, address: str | None = None,
                          log: Callable[[str], None] | None = None) -> ManifestReport:
    """Critique every row of ``manifest`` that the folder ``out`` does not hold yet, on the Ray cluster this
    process is connected to: the one ``ray.init()`` joined, else ``address``, else ``RAY_ADDRESS`` (set by
    ``ray job submit``), else a new local Ray.

    ``specs``: one :class:`~rationalrewards.runtime.factory.CheckpointSpec` (each actor loads it), or one
    :class:`~rationalrewards.runtime.factory.ServerSpec` per replica of a served model (each actor spreads
    its requests over them). ``manifest`` and ``out`` are local paths or URIs (``s3://…``); ``filesystem``
    overrides the one pyarrow picks for both. Returns the single path's report (``in_shard`` = all rows).
    """
    specs = (specs,) if isinstance(specs, (CheckpointSpec, ServerSpec)) else tuple(specs)
    one_checkpoint = len(specs) == 1 and isinstance(specs[0], CheckpointSpec)
    if not one_checkpoint and not (specs and all(isinstance(s, ServerSpec) for s in specs)):
        raise ValueError("give one CheckpointSpec, or ServerSpecs only (one per server URL)")
    say = log or (lambda msg: print(msg, file=sys.stderr))
    task = Task(task) if task else None
    options = options or GenerationOptions()
    if not ray.is_initialized():
        ray.init(address=address)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    for spec in specs:          # a wrong URL or model fails here, once, not in every actor
        if isinstance(spec, ServerSpec) and spec.check:
            build_critic(spec)

    manifest_fs, manifest_path = _filesystem(str(manifest), filesystem)
    out_fs, out_path = _filesystem(str(out), filesystem)
    errors_path = out_path.rstrip("/") + ".errors"
    info = manifest_fs.get_file_info(manifest_path)
    if info.type == pafs.FileType.NotFound:
        raise TableError(f"{manifest} does not exist")
    is_dir = info.type == pafs.FileType.Directory
    if isinstance(manifest_fs, pafs.LocalFileSystem):
        base = manifest_path if is_dir else str(Path(manifest_path).parent)
    else:
        base = manifest_path if is_dir else posixpath.dirname(manifest_path)

    try:
        ids = _ids(ray.data.read_datasource(_ManifestSource(manifest_path, ids_only=True, filesystem=manifest_fs)))
        _check_unique(ids, str(manifest))
        parts = _part_files(out_fs, out_path)
        if _remove_leftovers(out_fs, out_path):
            say(f"{out}: removed the unfinished files of an interrupted run")
        done = _ids(ray.data.read_datasource(_ManifestSource(parts, ids_only=True, filesystem=out_fs))) if parts \
            else pa.chunked_array([], pa.string())
        done = pa.concat_arrays(done.chunks) if done.num_chunks else pa.array([], pa.string())
        already = pc.sum(pc.is_in(ids, value_set=done)).as_py() or 0
        report = ManifestReport(total=len(ids), in_shard=len(ids), already_done=already)
        out_fs.delete_dir_contents(errors_path, missing_dir_ok=True)   # retried now, listed again if they fail
        if report.already_done < report.total:
            pool, batch, concurrency = _resources(specs, resources)
            say(f"ray: {report.total - report.already_done} row(s) to critique ({report.already_done} already in "
                f"{out}); actors {resources.actors or 'default'}, {pool.get('num_gpus', 0)} GPU(s) and "
                f"{pool['num_cpus']} CPU(s) each, {batch} row(s) per call")
            skip = ray.put(done) if len(done) else None
            sink = _PartsSink(out_fs, out_path, errors_path)
            rows = ray.data.read_datasource(_ManifestSource(manifest_path, task=task, skip=skip,
                                                            filesystem=manifest_fs))
            # one block per actor call: a finished call is written at once, so a kill loses only the calls in flight
            rows = rows.repartition(target_num_rows_per_block=batch)
            files = ImageFiles(base, None if isinstance(manifest_fs, pafs.LocalFileSystem) else manifest_fs)
            fetched = rows.map_batches(_fetch, fn_kwargs={"files": files},
                                       batch_format="pyarrow", batch_size=batch)
            results = fetched.map_batches(_CritiqueActor, fn_constructor_args=(specs, script, options, weights,
                                                                             concurrency),
                                          batch_format="pyarrow", **pool)
            results.write_datasink(sink)
            report.written, report.failed = sink.written, sink.failed
    except Exception as e:   # noqa: BLE001 - Ray wraps what a task raised; raise that, as the single path would
        inner = _unwrap(e)
        if inner is not e and isinstance(inner, (RationalRewardsError, OSError)):
            raise inner from None
        raise
    if not report.failed and out_fs.get_file_info(errors_path).type == pafs.FileType.Directory:
        out_fs.delete_dir(errors_path)
    return report


__all__ = ["RayResources", "critique_manifest_ray", "output_files"]
