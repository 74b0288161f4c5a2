"""Images as the web UIs' API sends them (base64 PNG) and as the tests compare them (RGB uint8 arrays)."""
from __future__ import annotations

import base64
import io

import numpy as np


def decode_image(b64: str):
    """A base64 PNG (a data: URL too) as an RGB array."""
    return decode_image_bytes(base64.b64decode(b64.split(",", 1)[-1]))


def decode_image_bytes(data: bytes):
    """A PNG file's bytes (as a web UI serves the image) as an RGB array."""
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def encode_image(arr) -> str:
    """An RGB array as a base64 PNG."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def png_text(b64: str, key: str) -> str | None:
    """A text chunk of a base64 PNG (as PNG Info reads "parameters")."""
    from PIL import Image
    return Image.open(io.BytesIO(base64.b64decode(b64.split(",", 1)[-1]))).info.get(key)


def mad(a, b) -> float:
    """Mean absolute pixel difference (0..255)."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def assert_same(a, b, what):
    """The same pixels: fails with how many differ, and by how much at most."""
    assert a.shape == b.shape, f"{what}: shapes {a.shape} != {b.shape}"
    diff = np.abs(a.astype(int) - b.astype(int))
    assert (diff == 0).all(), f"{what}: {np.count_nonzero(diff.max(axis=2))} pixels differ, max {diff.max()}"


def control_image(size=64):
    """A white ring and bar on black: an edge map as users feed to ControlNet's preprocessor "none"."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    img = ((np.abs(r - size / 4) < size / 16) | (np.abs(xx - size * 0.8) < size / 20)).astype(np.uint8) * 255
    return np.repeat(img[..., None], 3, axis=2)
