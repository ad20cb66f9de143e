"""engine.files: content-addressed storage, the one way the engine stores a file."""
import hashlib
import io

from django.core.files import File
from django.core.files.storage import default_storage

from engine.files import store_content_addressed


def test_the_same_bytes_are_stored_once_under_their_hash():
    data = b"a candidate's GLB"
    sha = hashlib.sha256(data).hexdigest()
    first = store_content_addressed(folder="candidates", extension="glb", data=data)
    again = store_content_addressed(folder="candidates", extension="glb", data=data, sha256=sha)
    assert first == again == f"candidates/{sha[:2]}/{sha}.glb"
    _, stored = default_storage.listdir(f"candidates/{sha[:2]}")
    assert stored == [f"{sha}.glb"] and default_storage.open(first).read() == data


def test_a_file_is_streamed_into_storage_under_the_hash_its_caller_gives():
    data = b"x" * 3_000_000  # more than one of Django's 64 KiB chunks
    sha = hashlib.sha256(data).hexdigest()
    name = store_content_addressed(folder="exports", extension="parquet", data=File(io.BytesIO(data)), sha256=sha)
    assert name == f"exports/{sha[:2]}/{sha}.parquet" and default_storage.open(name).read() == data


def test_messages_lose_the_servers_folders(settings):
    import tempfile

    from engine.files import without_server_paths

    media = settings.MEDIA_ROOT
    temp = tempfile.gettempdir()
    assert without_server_paths(f"No such file: '{media}/checkpoints/15/abc.pt'") == \
        "No such file: 'checkpoints/15/abc.pt'"
    assert without_server_paths(f"{temp}/training-run-4-x1y2/sft: no parquet") == "sft: no parquet"
    assert without_server_paths(f"in {temp}, not {temp}foo") == "in (a temporary folder), not " + f"{temp}foo"
    assert without_server_paths("images/a.png: not an image") == "images/a.png: not an image"
