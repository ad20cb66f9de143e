"""The filesystem broker of `make run` and `manage.py simulate` (engine/broker.py)."""
from __future__ import annotations

import os
import threading

from kombu import Connection

import engine.celery  # noqa: F401  (points the "filesystem" alias at engine.broker)


def _connection(folder):
    # Read messages are moved to a folder of the test's own (kombu's default is the system's temporary
    # folder, shared with every other process on the machine).
    (folder / "processed").mkdir(exist_ok=True)
    return Connection("filesystem://", transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), "polling_interval": 0.001,
        "store_processed": True, "processed_folder": str(folder / "processed")})


def test_the_filesystem_alias_is_the_atomic_transport(tmp_path):
    with _connection(tmp_path) as conn:
        assert type(conn.transport).__module__ == "engine.broker"


def test_a_reader_racing_the_writer_gets_every_message_whole(tmp_path):
    """kombu's own transport creates the file, then writes it: a reader listing the folder in between
    took the empty file and the worker died on a JSONDecodeError. Here every message arrives whole."""
    n, got, errors = 400, [], []

    def read():
        with _connection(tmp_path) as conn:
            queue = conn.SimpleQueue("q")
            try:
                while len(got) < n:
                    message = queue.get(timeout=30)
                    got.append(message.payload)
                    message.ack()
            except Exception as exc:  # the failure this test is about: a partial message
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("q")
        for i in range(n):
            queue.put({"i": i, "body": "x" * 20_000})
    reader.join(60)
    left = sorted(f for f in os.listdir(tmp_path) if f != "processed")
    assert not errors and sorted(p["i"] for p in got) == list(range(n)), (errors, len(got), left[:5], len(left))
    assert all(len(p["body"]) == 20_000 for p in got)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]
