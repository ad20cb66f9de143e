"""The HTTP backend: the worker sends a request to an inference server (`modelzoo.serve`).

Wire format (both directions), documented in docs/generators.md:

    frame = uint32 big-endian header length | UTF-8 JSON header | binary body

Arrays travel raw in the body, described in the header as
``{"offset": int, "length": int, "dtype": "uint8", "shape": [...]}`` (little-endian, C order).
``POST /v1/generate`` takes a request frame and returns a response frame;
``GET /v1/health`` returns JSON. Errors are JSON ``{"error": {"code", "message"}}``:
4xx means the request is bad (not retried), 5xx or no answer means the server is unwell
(`GeneratorUnavailable`, retried by the Celery task with backoff).
"""
from __future__ import annotations

import json
import struct
import threading
import time

import numpy as np
import requests

from modelzoo.generators.base import CandidateOutput, GenerationRequest, GeneratorError, Layout
from modelzoo.splats.gaussians import Gaussians
from modelzoo.splats.ply import ply_bytes

PROTOCOL_VERSION = 1
CONTENT_TYPE = "application/x-modelzoo-frame"


class GeneratorUnavailable(GeneratorError):
    """The inference server did not answer in time or answered 5xx: worth retrying."""


# ------------------------------------------------------------------ framing
class _Body:
    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> dict:
        ref = {"offset": self.size, "length": len(data)}
        self.parts.append(data)
        self.size += len(data)
        return ref

    def array(self, a: np.ndarray) -> dict:
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        return self.add(a.tobytes()) | {"dtype": a.dtype.str.lstrip("<|="), "shape": list(a.shape)}


def frame_encode(header: dict, body: _Body | None = None) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([struct.pack(">I", len(head)), head, *(body.parts if body else [])])


def frame_decode(data: bytes) -> tuple[dict, memoryview]:
    if len(data) < 4:
        raise GeneratorError("Truncated frame: fewer than 4 bytes.")
    (n,) = struct.unpack(">I", data[:4])
    if 4 + n > len(data):
        raise GeneratorError("Truncated frame: the header is longer than the data.")
    return json.loads(data[4:4 + n]), memoryview(data)[4 + n:]


_DTYPES = {"u1": np.uint8, "i4": np.int32, "u4": np.uint32, "f4": np.float32, "f8": np.float64, "b1": np.bool_}


def array_decode(ref: dict, body: memoryview) -> np.ndarray:
    dtype = _DTYPES.get(ref.get("dtype", ""))
    if dtype is None:
        raise GeneratorError(f"Unsupported array dtype {ref.get('dtype')!r}; use one of {sorted(_DTYPES)}.")
    start, length = int(ref["offset"]), int(ref["length"])
    if start < 0 or start + length > len(body):
        raise GeneratorError("An array reaches past the end of the frame.")
    shape = tuple(int(s) for s in ref["shape"])
    a = np.frombuffer(body[start:start + length], dtype=dtype)
    if a.size != int(np.prod(shape)):
        raise GeneratorError(f"Array of {a.size} values does not have shape {list(shape)}.")
    return a.reshape(shape)


def request_encode(req: GenerationRequest) -> bytes:
    body = _Body()
    header = {
        "version": PROTOCOL_VERSION,
        "seeds": [int(s) for s in req.seeds],
        "steps": int(req.steps),
        "image": body.array(np.asarray(req.image, np.uint8)),
        "mask": body.array(np.asarray(req.mask, np.bool_)),
        "depth": None if req.depth is None else body.array(np.asarray(req.depth, np.float32)),
        "intrinsics": None if req.intrinsics is None else np.asarray(req.intrinsics, float).tolist(),
    }
    return frame_encode(header, body)


def request_decode(data: bytes) -> GenerationRequest:
    header, body = frame_decode(data)
    try:
        image = array_decode(header["image"], body)
        mask = array_decode(header["mask"], body)
        if image.ndim != 3 or image.shape[2] != 3 or mask.shape != image.shape[:2]:
            raise GeneratorError("image must be H x W x 3 uint8 and mask H x W bool of the same size.")
        depth = array_decode(header["depth"], body) if header.get("depth") else None
        intrinsics = np.asarray(header["intrinsics"], float) if header.get("intrinsics") else None
        return GenerationRequest(image=image, mask=mask.astype(bool), seeds=[int(s) for s in header["seeds"]],
                                 steps=int(header.get("steps", 4)), depth=depth, intrinsics=intrinsics)
    except (KeyError, TypeError, ValueError) as exc:
        raise GeneratorError(f"Malformed generate request: {exc}") from None


def response_encode(outputs: list[CandidateOutput]) -> bytes:
    """The candidates as a response frame: mesh arrays, a GLB and a splat (as a 3DGS PLY, or the
    PLY/SPZ bytes the backend gave) travel raw in the body; files named by path are read here, on
    the server, so the worker never needs the server's disk."""
    body = _Body()
    candidates = []
    for out in outputs:
        splat = out.file_bytes("splat")
        if isinstance(splat, Gaussians):
            splat = ply_bytes(splat)
        glb = out.file_bytes("glb")
        candidates.append({
            "seed": int(out.seed),
            "layout": out.layout.as_dict() if out.layout is not None else None,
            "timings": {k: float(v) for k, v in out.timings.items()},
            "vertices": None if out.vertices is None else body.array(np.asarray(out.vertices, np.float32)),
            "faces": None if out.faces is None else body.array(np.asarray(out.faces, np.int32)),
            "vertex_colors": (None if out.vertex_colors is None
                              else body.array(np.asarray(out.vertex_colors, np.uint8))),
            "glb": body.add(bytes(glb)) if glb is not None else None,
            "splat": body.add(bytes(splat)) if splat is not None else None,
            "preview_png": body.add(out.preview_png) if out.preview_png else None,
            "info": out.info,
        })
    return frame_encode({"version": PROTOCOL_VERSION, "candidates": candidates}, body)


def _blob(ref: dict | None, body: memoryview) -> bytes | None:
    if not ref:
        return None
    start, length = int(ref["offset"]), int(ref["length"])
    if start < 0 or length < 0 or start + length > len(body):
        raise GeneratorError("A file reaches past the end of the frame.")
    return bytes(body[start:start + length])


def response_decode(data: bytes) -> list[CandidateOutput]:
    header, body = frame_decode(data)
    outputs = []
    for c in header["candidates"]:
        arrays = {name: array_decode(c[name], body).copy() if c.get(name) else None
                  for name in ("vertices", "faces", "vertex_colors")}
        outputs.append(CandidateOutput(
            seed=int(c["seed"]), **arrays,
            layout=Layout.from_dict(c["layout"]) if c.get("layout") else None,
            glb=_blob(c.get("glb"), body), splat=_blob(c.get("splat"), body),
            preview_png=_blob(c.get("preview_png"), body),
            timings=dict(c.get("timings", {})), info=dict(c.get("info") or {}),
        ))
    return outputs


# ------------------------------------------------------------------ client
class HttpGenerator:
    """A Generator that forwards requests to a `modelzoo.serve` server (or any server speaking
    the same protocol). One keep-alive session per thread."""

    backend = "http"

    def __init__(self, *, url: str, timeout_s: float = 120.0, connect_timeout_s: float = 5.0):
        self.url = url.rstrip("/")
        self.timeout = (connect_timeout_s, timeout_s)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self._session().request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise GeneratorUnavailable(f"Inference server {self.url} did not answer: {exc}") from None
        if response.status_code >= 500:
            raise GeneratorUnavailable(f"Inference server {self.url} failed ({response.status_code}): "
                                       f"{_error_message(response)}")
        if response.status_code >= 400:
            raise GeneratorError(f"Inference server {self.url} refused the request ({response.status_code}): "
                                 f"{_error_message(response)}")
        return response

    def health(self) -> dict:
        return self._call("GET", "/v1/health").json()

    def generate(self, request: GenerationRequest) -> list[CandidateOutput]:
        started = time.perf_counter()
        response = self._call("POST", "/v1/generate", data=request_encode(request),
                              headers={"Content-Type": CONTENT_TYPE})
        outputs = response_decode(response.content)
        if [o.seed for o in outputs] != [int(s) for s in request.seeds]:
            raise GeneratorError("The inference server returned candidates for other seeds than asked.")
        elapsed = time.perf_counter() - started
        for out in outputs:
            out.timings["http_roundtrip"] = elapsed / max(len(outputs), 1)
        return outputs


def _error_message(response: requests.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except Exception:  # noqa: BLE001 - any non-JSON body
        return response.text[:200]
