"""Writers: the same rows as Parquet shards, WebDataset tar shards or JSONL shards.

Deterministic by construction: rows arrive in a fixed order, shard boundaries depend only on
the rows, Parquet is written with fixed settings (zstd level 3, fixed row groups, no
timestamps) and tar headers carry mtime 0, uid/gid 0 and no user names.
Files go to a local temporary folder; the service hashes and stores them.
"""
from __future__ import annotations

import io
import json
import posixpath
import tarfile
from collections import OrderedDict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.storage import default_storage

ROW_GROUP_ROWS = 2048
ROW_GROUP_BYTES = 64 * 1024 * 1024

LAYOUT = pa.struct([("rotation", pa.list_(pa.float64())), ("translation", pa.list_(pa.float64())),
                    ("scale", pa.list_(pa.float64()))])
MASK = pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.string())])
FILE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

_COMMON = [
    ("key", pa.string()), ("round", pa.int64()), ("is_gold", pa.bool_()), ("image_id", pa.int64()),
    ("image", FILE), ("image_sha256", pa.string()), ("mask", MASK), ("mask_bbox", pa.list_(pa.float64())),
    ("label", pa.string()),
]


def _side(prefix: str) -> list:
    return [(f"{prefix}candidate_id", pa.int64()), (f"{prefix}source", pa.string()), (f"{prefix}mesh", FILE),
            (f"{prefix}checkpoint_id", pa.int64()), (f"{prefix}checkpoint", pa.string()),
            (f"{prefix}seed", pa.int64()), (f"{prefix}steps", pa.int64()), (f"{prefix}layout", LAYOUT)]


SCHEMAS = {
    "sft": pa.schema([("item_id", pa.int64()), *_COMMON, ("is_hard_case", pa.bool_()), *_side(""),
                      ("layout_model", LAYOUT), ("layout_adjusted", pa.bool_()), ("rating", pa.float64()),
                      ("ratings", pa.list_(pa.int64())), ("annotators", pa.list_(pa.string())),
                      ("judgement_ids", pa.list_(pa.int64()))]),
    "dpo": pa.schema([("group_id", pa.int64()), *_COMMON, ("judgement_id", pa.int64()), ("annotator", pa.string()),
                      ("pairing", pa.string()), ("comparison_index", pa.int64()), *_side("chosen_"),
                      *_side("rejected_"), ("score_chosen", pa.float64()), ("score_rejected", pa.float64()),
                      ("margin", pa.float64()), ("is_tie", pa.bool_()), ("rating", pa.int64())]),
}
# Columns holding a stored file: (column, Hugging Face feature type).
FILE_COLUMNS = {
    "sft": {"image": "Image", "mesh": "Mesh"},
    "dpo": {"image": "Image", "chosen_mesh": "Mesh", "rejected_mesh": "Mesh"},
}


def hf_features(kind: str) -> dict:
    """The `datasets` Features (as its JSON) of a kind: file columns as Image / Mesh."""
    files = FILE_COLUMNS[kind]

    def feature(t: pa.DataType):
        if pa.types.is_struct(t):
            return {t.field(i).name: feature(t.field(i).type) for i in range(t.num_fields)}
        if pa.types.is_list(t):
            return {"feature": feature(t.value_type), "_type": "List"}
        dtype = {"int64": "int64", "string": "string", "bool": "bool", "double": "float64"}[str(t)]
        return {"dtype": dtype, "_type": "Value"}

    return {f.name: ({"_type": files[f.name]} if f.name in files else feature(f.type)) for f in SCHEMAS[kind]}


class FileCache:
    """Bytes of stored files by name, least recently used out past a byte budget."""

    def __init__(self, budget: int = 64 * 1024 * 1024):
        self.budget, self.used, self.data = budget, 0, OrderedDict()

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


class _ShardedWriter:
    extension = ""

    def __init__(self, *, kind: str, folder: Path, shard_bytes: int, files: FileCache, prefix: str = "train"):
        self.kind, self.folder, self.shard_bytes, self.files, self.prefix = kind, folder, shard_bytes, files, prefix
        self.outputs: list[tuple[str, Path]] = []  # (path in the dataset, local file)
        self.shard_size = 0
        self.rows = 0

    def _next_path(self) -> tuple[str, Path]:
        rel = self.rel_path(len(self.outputs))
        local = self.folder / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        self.outputs.append((rel, local))
        self.shard_size = 0
        return rel, local

    def rel_path(self, index: int) -> str:
        return f"data/{self.prefix}-{index:06d}.{self.extension}"


class ParquetWriter(_ShardedWriter):
    extension = "parquet"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.schema = SCHEMAS[self.kind].with_metadata(
            {b"huggingface": json.dumps({"info": {"features": hf_features(self.kind)}}, sort_keys=True).encode()})
        self.file_columns = FILE_COLUMNS[self.kind]
        self.writer = None
        self.pending: list[dict] = []
        self.pending_bytes = 0

    def _open(self):
        _, local = self._next_path()
        self.writer = pq.ParquetWriter(local, self.schema, compression="zstd", compression_level=3,
                                       use_dictionary=True, write_statistics=True, version="2.6",
                                       data_page_version="1.0")

    def write(self, row: dict) -> None:
        size = 0
        for column in self.file_columns:
            name = row[column]
            data = self.files.get(name)
            row[column] = {"bytes": data, "path": posixpath.basename(name)}
            size += len(data)
        self.pending.append(row)
        self.pending_bytes += size + 512
        self.rows += 1
        if (len(self.pending) >= ROW_GROUP_ROWS
                or self.pending_bytes >= min(ROW_GROUP_BYTES, self.shard_bytes - self.shard_size)):
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        if self.writer is None:
            self._open()
        columns = [pa.array([r[f.name] for r in self.pending], type=f.type) for f in self.schema]
        table = pa.Table.from_arrays(columns, schema=self.schema)
        self.writer.write_table(table, row_group_size=len(self.pending))
        self.shard_size += self.pending_bytes
        self.pending, self.pending_bytes = [], 0
        if self.shard_size >= self.shard_bytes:
            self.writer.close()
            self.writer = None

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
    <key>.chosen.glb and <key>.rejected.glb (DPO). Keys hold no dots."""

    extension = "tar"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tar = None
        self.handle = None
        self.file_columns = FILE_COLUMNS[self.kind]

    def rel_path(self, index: int) -> str:
        return f"{self.prefix}-{index:06d}.tar"

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self.tar.addfile(info, io.BytesIO(data))
        self.shard_size += 512 + len(data)

    def write(self, row: dict) -> None:
        if self.tar is None:
            _, local = self._next_path()
            self.handle = open(local, "wb")
            self.tar = tarfile.open(fileobj=self.handle, mode="w", format=tarfile.USTAR_FORMAT)
        key = row["key"]
        meta = dict(row)
        for column in self.file_columns:
            name = row[column]
            ext = posixpath.splitext(name)[1] or ".bin"
            field = column.removesuffix("_mesh") if column != "mesh" else "mesh"  # chosen, rejected
            meta[column] = posixpath.basename(name)
            self._add(f"{key}.{field}{ext}", self.files.get(name))
        self._add(f"{key}.json", row_json(meta))
        self.rows += 1
        if self.shard_size >= self.shard_bytes:
            self._close_shard()

    def _close_shard(self):
        self.tar.close()
        self.handle.close()
        self.tar = self.handle = None

    def close(self) -> list[tuple[str, Path]]:
        if self.tar is not None:
            self._close_shard()
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
