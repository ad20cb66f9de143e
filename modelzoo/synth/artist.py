"""A simulated 3D artist: the ground-truth mesh of a synthetic object as an artist would model it
from the photo (shape and pose within a realistic error) and the time it takes. Used by the
simulated data engine (`engine.rounds.simulation.SimulatedArtist`) and `bench/loop_recipes.py`."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from modelzoo.generators.base import Layout
from modelzoo.synth.rotations import axis_angle, matrix_to_quat, quat_to_matrix


@dataclass
class ArtistError:
    """How far an artist's mesh is from the truth, and how long it takes (minutes, log-normal).
    Defaults: a modeller matching a photo by eye: surface within ~1% of the object's size, pose
    within a few degrees and a few per cent of the distance; 45 min median per mesh."""
    surface: float = 0.01  # vertex noise, fraction of the object's half size
    rotation_deg: float = 3.0
    translation: float = 0.02  # fraction of the distance to the camera
    scale: float = 0.03  # log-normal sigma
    minutes_median: float = 45.0
    minutes_sigma: float = 0.5

    def time_ms(self, rng: random.Random) -> int:
        return int(60_000 * self.minutes_median * float(np.exp(rng.gauss(0.0, self.minutes_sigma))))


def artist_mesh(vertices: np.ndarray, faces: np.ndarray, layout: Layout, error: ArtistError,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Layout]:
    """The truth (object-frame mesh, layout) with the artist's error: (vertices, faces, layout)."""
    v = np.asarray(vertices, np.float64)
    v = v + rng.normal(0.0, error.surface * float(np.abs(v).max()), size=v.shape)
    axis = rng.normal(size=3)
    R = axis_angle(axis / np.linalg.norm(axis), np.deg2rad(rng.normal(0.0, error.rotation_deg))) @ \
        quat_to_matrix(layout.rotation)
    t = np.asarray(layout.translation, np.float64)
    t = t + rng.normal(0.0, error.translation * float(np.linalg.norm(t)), size=3)
    s = float(np.mean(layout.scale)) * float(np.exp(rng.normal(0.0, error.scale)))
    placed = Layout(rotation=tuple(float(x) for x in matrix_to_quat(R)), translation=tuple(float(x) for x in t),
                    scale=(s, s, s))
    return v.astype(np.float32), np.asarray(faces), placed
