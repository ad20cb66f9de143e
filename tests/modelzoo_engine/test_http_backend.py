"""The HTTP backend against the real inference server (`python -m modelzoo.serve`) in a subprocess."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from annotation.models import Item, ItemState
from engine.rounds import generate
from modelzoo import services
from modelzoo.generators.base import GenerationRequest, GeneratorError
from modelzoo.generators.http import GeneratorUnavailable, HttpGenerator
from modelzoo.models import Candidate
from tests.modelzoo_engine.conftest import N, rng_image

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(checkpoint_file):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modelzoo.serve", "--checkpoint", str(checkpoint_file),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=os.environ | {"PYTHONPATH": str(ROOT)})
    client = HttpGenerator(url=f"http://127.0.0.1:{port}", timeout_s=60, connect_timeout_s=1)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.health()
            break
        except GeneratorUnavailable:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"modelzoo.serve did not start: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield client
    proc.terminate()
    proc.wait(timeout=10)


def test_health_names_backend_and_weights(server, checkpoint_file):
    import hashlib

    health = server.health()
    assert health["status"] == "ok" and health["backend"] == "builtin" and health["protocol"] == 1
    assert health["sha256"] == hashlib.sha256(checkpoint_file.read_bytes()).hexdigest()


def test_generate_over_http_matches_the_local_backend(server, checkpoint_file):
    from modelzoo.builtin import BuiltinGenerator

    mask = np.zeros((72, 96), bool)
    mask[10:60, 20:70] = True
    request = GenerationRequest(image=rng_image(), mask=mask, seeds=[3, 11], steps=2)
    remote = server.generate(request)
    local = BuiltinGenerator.from_checkpoint(checkpoint_file).generate(request)
    assert [o.seed for o in remote] == [3, 11]
    for r, l in zip(remote, local):
        np.testing.assert_allclose(r.vertices, l.vertices, atol=1e-6)
        np.testing.assert_array_equal(r.faces, l.faces)
        assert r.layout == l.layout and r.preview_png[:8] == b"\x89PNG\r\n\x1a\n"
        assert "http_roundtrip" in r.timings


def test_bad_request_is_refused_not_retried(server):
    empty = GenerationRequest(image=rng_image(), mask=np.zeros((72, 96), bool), seeds=[1])
    with pytest.raises(GeneratorError) as raised:
        server.generate(empty)
    assert not isinstance(raised.value, GeneratorUnavailable) and "empty" in str(raised.value)


def test_server_down_is_unavailable_quickly():
    client = HttpGenerator(url=f"http://127.0.0.1:{free_port()}", timeout_s=1, connect_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(GeneratorUnavailable):
        client.health()
    assert time.monotonic() - started < 2


def test_http_checkpoint_generates_candidates_through_the_engine(server, gen_project, fresh_registry):
    remote, _ = services.checkpoint_register(name="remote-builtin", version="1", backend="http",
                                             config={"url": server.url})
    services.project_mix_set(project=gen_project, mix=[(remote, 1.0)])
    job = generate.generation_job_start(project=gen_project, steps=1)
    job_item = job.job_items.first()
    generate.job_item_generate(job_item_id=job_item.pk)
    assert Candidate.objects.filter(item=job_item.item, checkpoint=remote).count() == N
    assert Item.objects.get(pk=job_item.item_id).state == ItemState.READY
