"""moto's S3 server made durable, the topology's S3-compatible endpoint (tests/topology.py).

moto keeps objects in memory only, so a killed moto loses the bucket, which MinIO or S3 never
do. Here every bucket and object is also written to a folder before the request is answered
(one file per object, renamed into place), and loaded back when the server starts: a kill -9
and a restart keep every object whose PUT was answered, as a real endpoint keeps it. Content
types and other metadata are not kept (the engine names files by their sha256 and extension).

    python -m tests.s3_endpoint --data FOLDER -H 127.0.0.1 -p PORT
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import quote, unquote

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import S3Backend, s3_backends

PARTIAL = ".partial"


def durable(data: Path) -> None:
    """Write buckets and objects through to `data`, after loading what is there."""
    put_object, create_bucket = S3Backend.put_object, S3Backend.create_bucket
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        create_bucket(backend, folder.name, "us-east-1")
        for path in folder.iterdir():
            if path.name.endswith(PARTIAL):  # a write the kill interrupted: its PUT was never answered
                path.unlink()
            else:
                put_object(backend, folder.name, unquote(path.name), path.read_bytes())

    def create_bucket_durable(self, bucket_name, region_name, *args, **kwargs):
        bucket = create_bucket(self, bucket_name, region_name, *args, **kwargs)
        (data / bucket_name).mkdir(parents=True, exist_ok=True)
        return bucket

    def put_object_durable(self, bucket_name, key_name, value, *args, **kwargs):
        key = put_object(self, bucket_name, key_name, value, *args, **kwargs)
        path = data / bucket_name / quote(key_name, safe="")
        partial = path.with_name(path.name + PARTIAL)
        with open(partial, "wb") as out:
            out.write(key.value)
        os.replace(partial, path)
        return key

    S3Backend.create_bucket, S3Backend.put_object = create_bucket_durable, put_object_durable


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="The folder that holds the buckets.")
    args, server_args = ap.parse_known_args(argv)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    durable(data)
    from moto.server import main as moto_server

    moto_server(server_args)


if __name__ == "__main__":
    main(sys.argv[1:])
