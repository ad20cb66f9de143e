"""The one protocol every generator backend implements.

Conventions (shared with the GLB writer, the layout stage and scene composition):

* Object frame: metres, +Y up, the mesh roughly centred on the origin.
* Camera frame: OpenGL / glTF / three.js style: +X right, +Y up, the camera at the
  origin looking down -Z. A point of the mesh lands in the camera frame as
  ``p_cam = translation + R(rotation) @ (scale * p_obj)``.
* Intrinsics: a 3x3 pinhole matrix K in pixels (fx, fy, cx, cy), image rows going
  down, so a camera-frame point projects to ``u = cx + fx * x / -z`` and
  ``v = cy - fy * y / -z``.
* Quaternions are (w, x, y, z), unit length.

A real GPU model (SAM 3D Objects, TRELLIS, Hunyuan3D) becomes a backend by
writing one class with a ``generate`` method that maps its own outputs to
`CandidateOutput`; see the README, "Adding a generator backend".
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from modelzoo.splats.gaussians import Gaussians


class GeneratorError(Exception):
    """A backend could not produce candidates for a request (bad input, server down)."""


@dataclass(frozen=True)
class Layout:
    """Pose of the object in the camera frame: rotation (w, x, y, z), translation (m), scale."""

    rotation: tuple[float, float, float, float]
    translation: tuple[float, float, float]
    scale: tuple[float, float, float]

    def as_dict(self) -> dict:
        return {
            "rotation": [float(v) for v in self.rotation],
            "translation": [float(v) for v in self.translation],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Layout":
        scale = data["scale"]
        if isinstance(scale, (int, float)):
            scale = (scale, scale, scale)
        return cls(
            rotation=tuple(float(v) for v in data["rotation"]),
            translation=tuple(float(v) for v in data["translation"]),
            scale=tuple(float(v) for v in scale),
        )


@dataclass
class GenerationRequest:
    """One object to lift to 3D: its photo, its mask and how to sample."""

    image: np.ndarray  # H x W x 3, uint8 RGB
    mask: np.ndarray  # H x W, bool
    seeds: list[int]
    steps: int = 4
    depth: np.ndarray | None = None  # H x W float32 metres, 0 where unknown
    intrinsics: np.ndarray | None = None  # 3 x 3; None means the documented default


@dataclass
class CandidateOutput:
    """One 3D candidate for one seed: a mesh, a Gaussian splat, or both, and its layout.

    The mesh comes as arrays (``vertices``, ``faces``, ``vertex_colors``: what the built-in model
    makes) or as ``glb``, a glTF 2.0 binary (PBR materials, UV textures, several primitives: what
    TRELLIS.2 and Hunyuan3D make), as bytes or a local file path. The splat comes as ``splat``:
    `modelzoo.splats.Gaussians`, or the bytes or path of a 3DGS PLY or an SPZ file. The engine
    validates each (a bad one fails the item with the reason), moves it to the object frame's
    convention (centred; +Y up and metres are the backend's promise) and keeps the pose in the layout.
    """

    seed: int
    vertices: np.ndarray | None = None  # V x 3 float32, object frame, metres
    faces: np.ndarray | None = None  # F x 3 int32
    vertex_colors: np.ndarray | None = None  # V x 4 uint8 RGBA
    layout: Layout | None = None
    preview_png: bytes | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    glb: bytes | str | os.PathLike | None = None  # the mesh as a GLB, instead of the arrays
    splat: Gaussians | bytes | str | os.PathLike | None = None  # 3DGS PLY or SPZ
    info: dict = field(default_factory=dict)  # what the backend wants recorded (layout source, its call)

    def has_mesh(self) -> bool:
        return self.glb is not None or self.vertices is not None

    def file_bytes(self, which: str) -> bytes | None:
        """`glb` or `splat` as bytes, read from its path when the backend gave one."""
        value = getattr(self, which)
        if value is None or isinstance(value, (bytes, bytearray, memoryview, Gaussians)):
            return value
        with open(value, "rb") as f:
            return f.read()


@runtime_checkable
class Generator(Protocol):
    """What the engine needs from a backend. ``generate`` returns one output per seed, in order."""

    backend: str

    def generate(self, request: GenerationRequest) -> list[CandidateOutput]: ...


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """The camera assumed when an image carries none: 60 degree horizontal field of view."""
    fx = 0.5 * width / np.tan(np.deg2rad(60.0) / 2)
    return np.array([[fx, 0.0, width / 2], [0.0, fx, height / 2], [0.0, 0.0, 1.0]], dtype=np.float64)
