"""Writers: the same rows as Parquet shards, WebDataset tar shards or JSONL shards.

Deterministic by construction: rows arrive in a fixed order, shard boundaries depend only on
the rows, Parquet is written with fixed settings (zstd level 3, fixed row groups, no
timestamps) and tar headers carry mtime 0, uid/gid 0 and no user names.
Files go to a local temporary folder; the service hashes and stores them.

Writers take rows as Arrow tables (`write_batch`, one per batch of items, ROW_SCHEMAS of
`schema`): Parquet stays columnar end to end; WebDataset and JSONL write one row at a time.

Referenced layout (`assets="referenced"`): `Assets` turns each file column into the sha256 of
its bytes and hands each asset, the first time a row refers to it, to an asset sink (Parquet
rows under assets/ or members of assets-*.tar); the rows keep only the sha256.
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
import queue
import re
import threading
import tarfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from django.core.files.storage import default_storage

from engine.exports.schema import (  # noqa: F401 (SCHEMAS: tests)
    ASSET_SCHEMA, FILE, FILE_COLUMNS, REF_SCHEMAS, SCHEMAS, hf_features,
)

ROW_GROUP_ROWS = 2048
ROW_GROUP_BYTES = 64 * 1024 * 1024
ROW_OVERHEAD_BYTES = 512  # a row's estimated size besides its files, for row-group and shard budgets


class FileCache:
    """Bytes of stored files by name, least recently used out past a byte budget."""

    def __init__(self, budget: int = 64 * 1024 * 1024):
        self.budget, self.used, self.data = budget, 0, OrderedDict()
        self.sizes: dict[str, int] = {}  # outlives the bytes: a row-group budget needs sizes first
        self._root = None  # MEDIA_ROOT on local storage, "" on remote storage

    def size(self, name: str) -> int:
        size = self.sizes.get(name)
        if size is None:
            if len(self.sizes) >= 200_000:
                self.sizes.clear()
            size = self.sizes[name] = len(self.get(name))
        return size

    def get(self, name: str) -> bytes:
        data = self.data.get(name)
        if data is not None:
            self.data.move_to_end(name)
            return data
        with default_storage.open(name, "rb") as handle:
            data = handle.read()
        self.data[name] = data
        self.used += len(data)
        while self.used > self.budget and len(self.data) > 1:
            _, old = self.data.popitem(last=False)
            self.used -= len(old)
        return data

    def read(self, name: str) -> bytes:
        """A file's bytes, past the cache (a referenced snapshot reads each asset once).

        On local storage, straight from MEDIA_ROOT: the storage's own path check costs more than
        the read. Names come from the engine's rows (content-addressed); one that could climb out
        of the folder goes through the storage's check."""
        if self._root is None:
            try:
                self._root = default_storage.path("")
            except NotImplementedError:  # remote storage (S3)
                self._root = ""
        if not self._root or ".." in name or name.startswith("/"):
            with default_storage.open(name, "rb") as handle:
                return handle.read()
        with open(f"{self._root}/{name}", "rb") as handle:
            return handle.read()


def _tar_shard_close(sink) -> None:
    """Close the sink's open tar shard (`sink.tar` over `sink.handle`); the next write opens another."""
    sink.tar.close()
    sink.handle.close()
    sink.tar = sink.handle = None


def _row_group_write(sink, table: pa.Table, nbytes: int) -> None:
    """Write `table` as one row group of the sink's open Parquet shard (`sink.writer`), count its
    `nbytes` of source data, and close the shard once it holds `sink.shard_bytes` (the next write
    opens another)."""
    sink.writer.write_table(table, row_group_size=table.num_rows)
    sink.shard_size += nbytes
    if sink.shard_size >= sink.shard_bytes:
        sink.writer.close()
        sink.writer = None


ASSET_GROUP_BYTES = 1024 * 1024  # an asset row group: what a random read of one asset costs at most
ASSET_GROUP_ROWS = 256


class ParquetAssets:
    """assets/assets-NNNNNN.parquet: ASSET_SCHEMA rows in small row groups (cheap random reads)."""

    def __init__(self, *, folder: Path, shard_bytes: int):
        self.folder, self.shard_bytes = folder, shard_bytes
        self.outputs: list[tuple[str, Path]] = []
        self.writer, self.shard_size = None, 0
        self.rows: list[list] = [[], [], [], []]
        self.pending = 0

    def add(self, sha: str, kind: str, extension: str, data: bytes) -> None:
        for column, value in zip(self.rows, (sha, kind, extension, data)):
            column.append(value)
        self.pending += len(data)
        if self.pending >= ASSET_GROUP_BYTES or len(self.rows[0]) >= ASSET_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.rows[0]:
            return
        if self.writer is None:
            rel = f"assets/assets-{len(self.outputs):06d}.parquet"
            local = self.folder / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            self.outputs.append((rel, local))
            # zstd level 1: GLB headers and index buffers shrink, PNG/JPEG photos pass nearly as they
            # are; in the asset thread (the codec releases the GIL), about 1 GB/s.
            self.writer = pq.ParquetWriter(local, ASSET_SCHEMA, compression="zstd", compression_level=1,
                                           use_dictionary=["kind", "extension"], write_statistics=False,
                                           version="2.6", data_page_version="1.0")
            self.shard_size = 0
        _row_group_write(self, pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(self.rows, ASSET_SCHEMA)],
                                                    schema=ASSET_SCHEMA), self.pending)
        self.rows, self.pending = [[], [], [], []], 0

    def close(self) -> list[tuple[str, Path]]:
        self._flush()
        if self.writer is not None:
            self.writer.close()
        return self.outputs


def _tar_add(tar, name: str, data: bytes) -> int:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
    return 512 + len(data)


class TarAssets:
    """assets-NNNNNN.tar beside the row shards: one member `<sha256>.<ext>` per asset."""

    def __init__(self, *, folder: Path, shard_bytes: int):
        self.folder, self.shard_bytes = folder, shard_bytes
        self.outputs: list[tuple[str, Path]] = []
        self.tar = self.handle = None
        self.shard_size = 0

    def add(self, sha: str, kind: str, extension: str, data: bytes) -> None:
        if self.tar is None:
            rel = f"assets-{len(self.outputs):06d}.tar"
            self.outputs.append((rel, self.folder / rel))
            self.handle = open(self.folder / rel, "wb")
            self.tar = tarfile.open(fileobj=self.handle, mode="w", format=tarfile.USTAR_FORMAT)
            self.shard_size = 0
        self.shard_size += _tar_add(self.tar, f"{sha}.{extension}", data)
        if self.shard_size >= self.shard_bytes:
            _tar_shard_close(self)

    def close(self) -> list[tuple[str, Path]]:
        if self.tar is not None:
            _tar_shard_close(self)
        return self.outputs


_SHA256 = re.compile(r"[0-9a-f]{64}")
_DONE = object()


class Assets:
    """A referenced snapshot's assets: each stored file once, keyed by the sha256 of its bytes.

    Stored names are content-addressed (`<folder>/<sha[:2]>/<sha>.<ext>`), so a row's key is its
    name's stem and needs no read: one thread reads each new asset, checks that its bytes hash to
    the key and hands it to the sink, while the rows go on being built (file reads, hashing and
    Parquet writes release the GIL). A stored file that does not hash to its name fails the build
    (the store is corrupt); a name that is not content-addressed is read and hashed here, first.
    Assets reach the sink in the order rows first refer to them. Memory: a set entry per asset
    (about 150 bytes) and the assets of at most QUEUE + 1 batches of rows in flight.
    """

    QUEUE = 2  # batches of rows whose assets are in flight (a batch: about 7,000 assets in the bench)

    def __init__(self, *, sink, files: FileCache):
        self.sink, self.files = sink, files
        self.seen: set[str] = set()
        self.renamed: dict[str, str] = {}  # names that are not content-addressed -> their bytes' sha256
        self.count = self.bytes = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=self.QUEUE)  # lists of new assets, one per batch of rows
        self.jobs: list[tuple] = []
        self.thread = threading.Thread(target=self._work, name="snapshot-assets", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            jobs = self.queue.get()
            if jobs is _DONE:
                return
            if self.error is not None:
                continue  # drain: the build fails at the next batch or at close
            try:
                for name, key, kind, ext, data in jobs:
                    if data is None:
                        data = self.files.read(name)
                        sha = hashlib.sha256(data).hexdigest()
                        if sha != key:
                            raise RuntimeError(f"Stored file {name} does not hash to its name (sha256 {sha}): "
                                               "the file store is corrupt; restore the file, then rebuild.")
                    self.sink.add(key, kind, ext, data)
                    self.count += 1
                    self.bytes += len(data)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the building thread
                self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def ref(self, name: str | None, kind: str) -> str | None:
        if name is None:
            return None
        stem, ext = posixpath.splitext(posixpath.basename(name))
        key = self.renamed.get(name, stem)
        if key in self.seen:
            return key
        data = None
        if not _SHA256.fullmatch(key):
            data = self.files.read(name)
            key = self.renamed[name] = hashlib.sha256(data).hexdigest()
            if key in self.seen:
                return key
        self.seen.add(key)
        self.jobs.append((name, key, kind, ext.lstrip(".") or "bin", data))
        return key

    def table(self, table: pa.Table, file_columns: dict) -> pa.Table:
        """The rows with each file column's storage names replaced by sha256s (each distinct name once)."""
        for column, feature in file_columns.items():
            encoded = pc.dictionary_encode(table.column(column)).combine_chunks()
            kind = {"Image": "image", "Mesh": "mesh", "Splat": "splat"}[feature]
            keys = pa.array([self.ref(n, kind) for n in encoded.dictionary.to_pylist()], pa.string())
            table = table.set_column(table.schema.get_field_index(column), column, keys.take(encoded.indices))
        self._raise()
        if self.jobs:
            self.queue.put(self.jobs)
            self.jobs = []
        return table

    def close(self) -> list[tuple[str, Path]]:
        """Wait for the assets in flight; the sink's files."""
        self.stop()
        self._raise()
        return self.sink.close()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.queue.put(_DONE)
            self.thread.join()


class _ShardedWriter:
    extension = ""

    asset_sink = None

    def __init__(self, *, kind: str, folder: Path, shard_bytes: int, files: FileCache, prefix: str = "train",
                 assets: str = "embedded"):
        self.kind, self.folder, self.shard_bytes, self.files, self.prefix = kind, folder, shard_bytes, files, prefix
        self.outputs: list[tuple[str, Path]] = []  # (path in the dataset, local file)
        self.shard_size = 0
        self.rows = 0
        self.assets = None
        if assets == "referenced":
            self.assets = Assets(sink=self.asset_sink(folder=folder, shard_bytes=shard_bytes), files=files)

    def asset_outputs(self) -> list[tuple[str, Path]]:
        return self.assets.close() if self.assets is not None else []

    def abort(self) -> None:
        """Stop the asset thread of a build that failed."""
        if self.assets is not None:
            self.assets.stop()

    def _next_path(self) -> tuple[str, Path]:
        rel = self.rel_path(len(self.outputs))
        local = self.folder / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        self.outputs.append((rel, local))
        self.shard_size = 0
        return rel, local

    def rel_path(self, index: int) -> str:
        return f"data/{self.prefix}-{index:06d}.{self.extension}"

    def write_batch(self, table: pa.Table) -> None:
        """Rows one at a time, as dicts (file columns hold storage names, or sha256s when referenced)."""
        if self.assets is not None:
            table = self.assets.table(table, FILE_COLUMNS[self.kind])
        for row in table.to_pylist():
            self.write(row)

    def write(self, row: dict) -> None:
        raise NotImplementedError


class ParquetWriter(_ShardedWriter):
    """Row groups of at most ROW_GROUP_ROWS rows and about ROW_GROUP_BYTES; a shard closes past
    shard_bytes. Each file is read once per row group and shared by its rows through `take`."""

    extension = "parquet"
    asset_sink = ParquetAssets

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        layout = "embedded" if self.assets is None else "referenced"
        schema = SCHEMAS[self.kind] if self.assets is None else REF_SCHEMAS[self.kind]
        self.schema = schema.with_metadata({b"huggingface": json.dumps(
            {"info": {"features": hf_features(self.kind, layout)}}, sort_keys=True).encode()})
        self.file_columns = FILE_COLUMNS[self.kind] if self.assets is None else {}
        self.writer = None
        self.pending: list[pa.Table] = []  # slices of row tables, the next row group
        self.pending_rows = 0
        self.pending_bytes = 0

    def _open(self):
        _, local = self._next_path()
        self.writer = pq.ParquetWriter(local, self.schema, compression="zstd", compression_level=3,
                                       use_dictionary=True, write_statistics=True, version="2.6",
                                       data_page_version="1.0")

    def _row_sizes(self, table: pa.Table) -> list[int]:
        """Each row's estimated bytes: its files plus ROW_OVERHEAD_BYTES."""
        sizes = np.full(table.num_rows, ROW_OVERHEAD_BYTES, dtype=np.int64)
        for column in self.file_columns:
            names = pc.dictionary_encode(table.column(column)).combine_chunks()
            per_name = np.array([self.files.size(n) for n in names.dictionary.to_pylist()] + [0], dtype=np.int64)
            sizes += per_name[pc.fill_null(names.indices, len(per_name) - 1).to_numpy()]  # null: no file
        return sizes.tolist()

    def write_batch(self, table: pa.Table) -> None:
        """Cut the rows into row groups by count and estimated bytes; only sizes are read here.

        Known quirk, kept so existing definitions rebuild byte-identically: after a shard closes,
        shard_size holds the closed shard's size until the next shard opens, so each later
        shard starts with a one-row row group.
        """
        if self.assets is not None:
            table = self.assets.table(table, FILE_COLUMNS[self.kind])
        start = 0
        for i, size in enumerate(self._row_sizes(table)):
            self.pending_rows += 1
            self.pending_bytes += size
            self.rows += 1
            if (self.pending_rows >= ROW_GROUP_ROWS
                    or self.pending_bytes >= min(ROW_GROUP_BYTES, self.shard_bytes - self.shard_size)):
                self.pending.append(table.slice(start, i + 1 - start))
                start = i + 1
                self._flush()
        if start < table.num_rows:
            self.pending.append(table.slice(start))

    def _files(self, names: pa.ChunkedArray) -> pa.Array:
        """Storage names as {bytes, path} structs: each distinct file read once."""
        encoded = pc.dictionary_encode(names).combine_chunks()
        distinct = encoded.dictionary.to_pylist()
        files = pa.StructArray.from_arrays(
            [pa.array([self.files.get(n) for n in distinct], pa.binary()),
             pa.array([posixpath.basename(n) for n in distinct], pa.string())], fields=list(FILE))
        return files.take(encoded.indices)

    def _flush(self) -> None:
        if not self.pending:
            return
        if self.writer is None:
            self._open()
        rows = pa.concat_tables(self.pending).combine_chunks()
        columns = [self._files(rows.column(f.name)) if f.name in self.file_columns else rows.column(f.name)
                   for f in self.schema]
        _row_group_write(self, pa.Table.from_arrays(columns, schema=self.schema), self.pending_bytes)
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0

    def close(self) -> list[tuple[str, Path]]:
        self._flush()
        if self.writer is not None:
            self.writer.close()
        if not self.outputs:  # an empty dataset still has one (empty) shard with the schema
            self._open()
            self.writer.close()
        return self.outputs


def _json_default(value):
    raise TypeError(f"not JSON serialisable: {type(value)}")


def row_json(row: dict) -> bytes:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode()


class WebDatasetWriter(_ShardedWriter):
    """One sample per row: <key>.json, <key>.image.<ext>, and <key>.mesh.glb (SFT) or
    <key>.chosen.glb and <key>.rejected.glb (DPO). Keys hold no dots.
    Referenced: <key>.json only (file fields hold sha256s), assets in assets-NNNNNN.tar."""

    extension = "tar"
    asset_sink = TarAssets

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tar = None
        self.handle = None
        self.file_columns = FILE_COLUMNS[self.kind]

    def rel_path(self, index: int) -> str:
        return f"{self.prefix}-{index:06d}.tar"

    def _add(self, name: str, data: bytes) -> None:
        self.shard_size += _tar_add(self.tar, name, data)

    def write(self, row: dict) -> None:
        if self.tar is None:
            _, local = self._next_path()
            self.handle = open(local, "wb")
            self.tar = tarfile.open(fileobj=self.handle, mode="w", format=tarfile.USTAR_FORMAT)
        key = row["key"]
        meta = dict(row)
        for column in (self.file_columns if self.assets is None else ()):
            name = row[column]
            if name is None:  # a splat-only candidate's mesh, a mesh-only candidate's splat
                continue
            ext = posixpath.splitext(name)[1] or ".bin"
            field = column.removesuffix("_mesh") if column != "mesh" else "mesh"  # chosen, rejected
            field = field.replace("_splat", ".splat")  # chosen.splat, rejected.splat
            meta[column] = posixpath.basename(name)
            self._add(f"{key}.{field}{ext}", self.files.get(name))
        self._add(f"{key}.json", row_json(meta))
        self.rows += 1
        if self.shard_size >= self.shard_bytes:
            _tar_shard_close(self)

    def close(self) -> list[tuple[str, Path]]:
        if self.tar is not None:
            _tar_shard_close(self)
        if not self.outputs:
            _, local = self._next_path()
            with open(local, "wb") as handle, tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT):
                pass
        return self.outputs


class JsonlWriter(_ShardedWriter):
    """Rows as JSON lines; files as their storage names (content-addressed: <folder>/<sha[:2]>/<sha>.<ext>)."""

    extension = "jsonl"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.handle = None

    def write(self, row: dict) -> None:
        if self.handle is None:
            _, local = self._next_path()
            self.handle = open(local, "wb")
        line = row_json(row) + b"\n"
        self.handle.write(line)
        self.shard_size += len(line)
        self.rows += 1
        if self.shard_size >= self.shard_bytes:
            self.handle.close()
            self.handle = None

    def close(self) -> list[tuple[str, Path]]:
        if self.handle is not None:
            self.handle.close()
        if not self.outputs:
            _, local = self._next_path()
            local.write_bytes(b"")
        return self.outputs


WRITERS = {"parquet": ParquetWriter, "webdataset": WebDatasetWriter, "jsonl": JsonlWriter}
