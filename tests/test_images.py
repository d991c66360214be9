"""Tests for the stdlib PNG helpers in tests/images.py."""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.images import (
    colour_distance,
    data_uri,
    decode_png,
    from_data_uri,
    mask_png,
    pixel,
    png_size,
    png_with_square,
    solid_png,
)

ORANGE = (255, 128, 0)
WHITE = (255, 255, 255)

# A Python that has opencv-python-headless, e.g. the venv that serves models/inpaint.
CV2_PYTHON = os.environ.get("INPAINT_PYTHON", "/tmp/venv_cog/bin/python")


def _filter_types(png: bytes) -> set[int]:
    """The set of row filter types used in an 8-bit PNG."""
    pos, idat, header = 8, b"", None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    assert header is not None
    width, height, _depth, colour = header[:4]
    stride = width * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour] + 1
    raw = zlib.decompress(idat)
    return {raw[y * stride] for y in range(height)}


def test_round_trip_square_and_mask() -> None:
    png = png_with_square(64, 48, ORANGE, WHITE, (16, 8, 32, 24))
    assert png_size(png) == (64, 48)
    img = decode_png(png)
    assert img.size == (64, 48)
    assert img.pixel(0, 0) == ORANGE
    assert img.pixel(16, 8) == WHITE
    assert img.pixel(31, 23) == WHITE
    assert img.pixel(32, 23) == ORANGE
    assert img.pixel(31, 24) == ORANGE
    assert pixel(png, 24, 16) == WHITE

    mask = mask_png(64, 48, (16, 8, 32, 24))
    assert pixel(mask, 20, 10) == WHITE
    assert pixel(mask, 0, 0) == (0, 0, 0)

    assert pixel(solid_png(3, 2, (1, 2, 3)), 2, 1) == (1, 2, 3)
    assert from_data_uri(data_uri(png)) == png
    assert data_uri(png).startswith("data:image/png;base64,iVBORw0KGgo")
    assert colour_distance((0, 128, 255), (5, 120, 255)) == 8


def test_rejects_non_png() -> None:
    with pytest.raises(ValueError):
        decode_png(b"GIF89a....")
    with pytest.raises(ValueError):
        from_data_uri("http://example.com/x.png")


_CV2_WRITER = r"""
import sys, numpy as np, cv2
out = sys.argv[1]
h, w = 37, 53
y, x = np.mgrid[0:h, 0:w]
rng = np.random.default_rng(7)
bgr = np.dstack([(x * 5) % 256, (y * 7) % 256, (x * y) % 256]).astype(np.uint8)
bgr[::3] = rng.integers(0, 256, size=bgr[::3].shape, dtype=np.uint8)
every = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_ALL_FILTERS]
cv2.imwrite(out + "/default.png", bgr)  # what the model writes (OpenCV's default filter)
cv2.imwrite(out + "/rgb.png", bgr, every)
cv2.imwrite(out + "/rgba.png", np.dstack([bgr, (x * 3 % 256).astype(np.uint8)]), every)
cv2.imwrite(out + "/grey.png", bgr[:, :, 1], every)
open(out + "/rgb.raw", "wb").write(np.ascontiguousarray(bgr[:, :, ::-1]).tobytes())
"""


@pytest.mark.skipif(not Path(CV2_PYTHON).exists(), reason=f"no OpenCV Python at {CV2_PYTHON}")
def test_decodes_pngs_written_by_opencv(tmp_path: Path) -> None:
    subprocess.run([CV2_PYTHON, "-c", _CV2_WRITER, str(tmp_path)], check=True, timeout=60)
    raw = (tmp_path / "rgb.raw").read_bytes()
    w, h = 53, 37
    expected = [[tuple(raw[(y * w + x) * 3 : (y * w + x) * 3 + 3]) for x in range(w)] for y in range(h)]

    default = decode_png((tmp_path / "default.png").read_bytes())
    assert default.size == (w, h)
    assert [list(r) for r in default.rows] == expected

    # With all filters allowed, libpng's adaptive choice uses every filter type here.
    used = set().union(*(_filter_types((tmp_path / f).read_bytes()) for f in ("rgb.png", "rgba.png", "grey.png")))
    assert used == {0, 1, 2, 3, 4}

    rgb = decode_png((tmp_path / "rgb.png").read_bytes())
    assert [list(r) for r in rgb.rows] == expected

    rgba = decode_png((tmp_path / "rgba.png").read_bytes())
    assert [list(r) for r in rgba.rows] == expected

    grey = decode_png((tmp_path / "grey.png").read_bytes())
    assert all(grey.pixel(x, y) == (expected[y][x][1],) * 3 for y in range(h) for x in range(w))
