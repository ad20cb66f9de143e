"""Readers of a referenced snapshot (definition `assets: "referenced"`): rows hold the sha256 of
each photo and mesh, stored once under `assets/`. Plain Python (pyarrow, tarfile); `datasets`
and `webdataset` are imported only by the function that uses them.

    ds = referenced_dataset("my-snapshot")          # datasets.Dataset, files resolved per row read
    ds[0]["image"], ds[0]["chosen_mesh"]            # PIL image, trimesh scene: as the embedded layout

    assets = TarAssets.from_folder("my-snapshot")   # WebDataset layout: index of the asset tars
    wds.WebDataset(shards, shardshuffle=False).map(assets.attach).decode("pil")

Both resolve lazily: an index of sha256 -> where (built from the assets' sha256 column or the
tar headers, no asset bytes read), and one small read per asset a row needs.
"""
from __future__ import annotations

import glob
import json
import os
import tarfile
from collections import OrderedDict

import pyarrow.parquet as pq

# A file column of the rows -> its name in a WebDataset sample (`<name>.<ext>`).
FILE_FIELDS = {"image": "image", "mesh": "mesh", "chosen_mesh": "chosen", "rejected_mesh": "rejected",
               "splat": "splat", "chosen_splat": "chosen.splat", "rejected_splat": "rejected.splat"}


def is_referenced(folder: str) -> bool:
    return bool(glob.glob(os.path.join(folder, "assets", "*.parquet")) or glob.glob(os.path.join(folder, "assets-*.tar")))


class ParquetAssets:
    """sha256 -> bytes over `assets/assets-*.parquet`; a miss reads one row group (about 1 MiB),
    the last `cache_groups` of which are kept. Picklable (files open lazily), so it can go to
    DataLoader workers."""

    def __init__(self, paths: list[str], cache_groups: int = 8):
        self.paths, self.cache_groups = list(paths), cache_groups
        self.where: dict[str, tuple[int, int, int]] = {}  # sha256 -> (file, row group, row in group)
        self.extensions: dict[str, str] = {}
        for f, path in enumerate(self.paths):
            meta = pq.ParquetFile(path).metadata
            table = pq.read_table(path, columns=["sha256", "extension"])
            shas, exts = table.column("sha256").to_pylist(), table.column("extension").to_pylist()
            row = 0
            for g in range(meta.num_row_groups):
                for r in range(meta.row_group(g).num_rows):
                    self.where[shas[row]] = (f, g, r)
                    self.extensions[shas[row]] = exts[row]
                    row += 1
        self._files: dict[int, pq.ParquetFile] = {}
        self._groups: OrderedDict = OrderedDict()

    @classmethod
    def from_folder(cls, folder: str, **kwargs) -> "ParquetAssets":
        return cls(sorted(glob.glob(os.path.join(folder, "assets", "assets-*.parquet"))), **kwargs)

    def __getstate__(self):
        return {**self.__dict__, "_files": {}, "_groups": OrderedDict()}

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, sha: str) -> bool:
        return sha in self.where

    def get(self, sha: str) -> bytes:
        f, g, r = self.where[sha]
        group = self._groups.get((f, g))
        if group is None:
            if f not in self._files:
                self._files[f] = pq.ParquetFile(self.paths[f])
            group = self._groups[(f, g)] = self._files[f].read_row_group(g, columns=["bytes"]).column(0)
            while len(self._groups) > self.cache_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end((f, g))
        return group[r].as_py()

    def file(self, sha: str | None) -> dict | None:
        """{bytes, path} as an embedded snapshot's file column holds it."""
        if sha is None:
            return None
        return {"bytes": self.get(sha), "path": f"{sha}.{self.extensions[sha]}"}


def referenced_dataset(folder: str, *, cache_dir: str | None = None, decode: bool = True):
    """The rows of a referenced Parquet snapshot as a `datasets.Dataset` whose file columns are
    resolved when a row (or batch) is read: decoded like the embedded layout's Image / Mesh
    features, or {bytes, path} dicts with decode=False."""
    import datasets

    rows = datasets.load_dataset("parquet", data_files=os.path.join(folder, "data", "train-*.parquet"),
                                 split="train", cache_dir=cache_dir)
    assets = ParquetAssets.from_folder(folder)
    columns = [c for c in FILE_FIELDS if c in rows.column_names]
    image, mesh = datasets.Image(), datasets.Mesh()

    def resolve(batch: dict) -> dict:
        for column in columns:
            feature = image if column == "image" else mesh
            files = [assets.file(sha) for sha in batch[column]]
            if column.endswith("splat"):  # no datasets feature: {bytes, path} of the PLY, as embedded
                batch[column] = files
                continue
            batch[column] = [feature.decode_example(f) if decode and f is not None else f for f in files]
        return batch

    rows.set_transform(resolve)
    return rows


class TarAssets:
    """sha256 -> bytes over `assets-*.tar` (WebDataset layout), from an index of the members'
    offsets read from the tar headers; `attach` adds a sample's files under the names the
    embedded layout gives them."""

    def __init__(self, paths: list[str]):
        self.paths = list(paths)
        self.where: dict[str, tuple[int, int, int, str]] = {}  # sha256 -> (file, offset, size, extension)
        for f, path in enumerate(self.paths):
            with tarfile.open(path, mode="r:") as tar:
                for member in tar:
                    sha, _, ext = member.name.partition(".")
                    self.where[sha] = (f, member.offset_data, member.size, ext)

    @classmethod
    def from_folder(cls, folder: str) -> "TarAssets":
        return cls(sorted(glob.glob(os.path.join(folder, "assets-*.tar"))))

    def __len__(self) -> int:
        return len(self.where)

    def get(self, sha: str) -> bytes:
        f, offset, size, _ = self.where[sha]
        with open(self.paths[f], "rb") as handle:
            handle.seek(offset)
            return handle.read(size)

    def attach(self, sample: dict) -> dict:
        meta = json.loads(sample["json"])
        for column, field in FILE_FIELDS.items():
            sha = meta.get(column)
            if sha:
                sample[f"{field}.{self.where[sha][3]}"] = self.get(sha)
        return sample
