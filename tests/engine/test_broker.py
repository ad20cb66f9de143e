"""The filesystem broker of `make run` and `manage.py simulate` (engine/broker.py)."""
from __future__ import annotations

import base64
import json
import os
import threading
from queue import Empty

import pytest
from kombu import Connection

import engine.celery  # noqa: F401  (points the "filesystem" alias at engine.broker)


# A message routed to no queue is only a warning in kombu, and the reader then waits for nothing.
pytestmark = pytest.mark.filterwarnings("error::kombu.transport.virtual.base.UndeliverableWarning")


def _connection(folder, store_processed=False):
    """The engine's options (engine/settings.py), in a folder of the test's own."""
    (folder / "processed").mkdir(parents=True, exist_ok=True)
    return Connection("filesystem://", transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), "polling_interval": 0.001,
        "store_processed": store_processed, "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control")})


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


def test_two_readers_of_one_queue_get_each_message_once(tmp_path):
    """Two workers on one broker folder: every message is taken by exactly one of them."""
    n, got, errors = 300, [[], []], []
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("q")
        for i in range(n):
            queue.put({"i": i})

    def read(mine):
        with _connection(tmp_path) as conn:
            queue = conn.SimpleQueue("q")
            try:
                while len(got[0]) + len(got[1]) < n:
                    message = queue.get(timeout=2)
                    mine.append(message.payload["i"])
                    message.ack()
            except Empty:
                pass  # the other reader took the last ones
            except Exception as exc:
                errors.append(exc)

    readers = [threading.Thread(target=read, args=(mine,)) for mine in got]
    for r in readers:
        r.start()
    for r in readers:
        r.join(60)
    assert not errors
    assert sorted(got[0] + got[1]) == list(range(n)), (len(got[0]), len(got[1]))
    assert got[0] and got[1], "one reader took every message: the race was not run"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".msg") or ".taken-" in f]


def test_kept_messages_go_to_the_processed_folder_whole(tmp_path):
    with _connection(tmp_path, store_processed=True) as conn:
        queue = conn.SimpleQueue("q")
        queue.put({"i": 1, "body": "y" * 5000})
        message = queue.get(timeout=5)
        message.ack()
    kept = os.listdir(tmp_path / "processed")
    assert message.payload["i"] == 1 and len(kept) == 1 and kept[0].endswith(".q.msg")
    body = json.loads((tmp_path / "processed" / kept[0]).read_bytes())["body"]
    assert json.loads(base64.b64decode(body)) == {"i": 1, "body": "y" * 5000}


def test_a_queue_declared_before_in_another_folder_still_gets_its_messages(tmp_path):
    """kombu keeps a process's bindings in memory and skips writing the routing file when memory
    has the binding: a process that had declared the queue for another broker folder (a test
    before, a reconfigured worker) routed every message to the dead-letter queue."""
    with _connection(tmp_path / "before") as conn:
        conn.SimpleQueue("q")
    with _connection(tmp_path / "now") as conn:
        queue = conn.SimpleQueue("q")
        queue.put({"i": 7})
        message = queue.get(timeout=5)
        message.ack()
    assert message.payload == {"i": 7}

