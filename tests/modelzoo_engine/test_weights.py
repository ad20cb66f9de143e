"""A Checkpoint record's weights as a local file, and its generator loaded once per process."""
import io

from modelzoo import weights
from modelzoo.models import Checkpoint
from modelzoo.weights import checkpoint_local_path, generator_for_checkpoint


def test_checkpoint_is_loaded_once_per_process(checkpoint, fresh_registry):
    first = generator_for_checkpoint(checkpoint)
    again = generator_for_checkpoint(Checkpoint.objects.get(pk=checkpoint.pk))
    assert first is again and fresh_registry.loaded.loads == 1
    assert first.backend == "builtin"


def test_weights_on_local_storage_are_the_stored_file(checkpoint, checkpoint_file):
    path = checkpoint_local_path(checkpoint)
    assert open(path, "rb").read() == checkpoint_file.read_bytes()
    assert checkpoint_local_path(Checkpoint(name="remote", version="1", backend="http")) is None


class RemoteStorage:
    """Storage without local paths, as S3 is: files can only be opened."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.opened = files, 0

    def path(self, name):
        raise NotImplementedError

    def open(self, name, mode="rb"):
        self.opened += 1
        return io.BytesIO(self.files[name])


def test_remote_weights_are_copied_once_under_var_dir(checkpoint, settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    remote = RemoteStorage({checkpoint.file.name: b"weights"})
    monkeypatch.setattr(weights, "default_storage", remote)
    first, again = checkpoint_local_path(checkpoint), checkpoint_local_path(checkpoint)
    assert first == again == str(tmp_path / "checkpoint-cache" / checkpoint.sha256)
    assert open(first, "rb").read() == b"weights" and remote.opened == 1
