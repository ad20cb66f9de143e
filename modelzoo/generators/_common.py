"""What the adapters of real models share: the photo as they take it, tensors to numpy, seeds."""
from __future__ import annotations

import numpy as np


def rgba_photo(image: np.ndarray, mask: np.ndarray):
    """The photo as a PIL RGBA image whose alpha is the object's mask: how TRELLIS.2 and
    Hunyuan3D take an object already cut out (their preprocessing then crops to the alpha)."""
    from PIL import Image

    rgba = np.concatenate([np.asarray(image, np.uint8)[..., :3],
                           (np.asarray(mask, bool) * 255).astype(np.uint8)[..., None]], axis=2)
    return Image.fromarray(rgba, "RGBA")


def to_numpy(value) -> np.ndarray:
    """A torch tensor (on any device) or array-like as a float64 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, np.float64)
