"""File helpers shared by the model zoo and the engine (plain Python)."""
import hashlib
from os import PathLike


def sha256_file(path: str | PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (checkpoints and shards can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
