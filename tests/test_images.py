"""Tests for the stdlib PNG helpers in tests/images.py."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
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


def _opencv_pngs() -> tuple[dict[str, bytes], list[list[tuple[int, ...]]]]:
    """PNGs encoded by OpenCV (the library the demo model writes its outputs with), and their RGB pixels."""
    h, w = 37, 53
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(7)
    bgr = np.dstack([(x * 5) % 256, (y * 7) % 256, (x * y) % 256]).astype(np.uint8)
    bgr[::3] = rng.integers(0, 256, size=bgr[::3].shape, dtype=np.uint8)
    every = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_ALL_FILTERS]
    images = {
        "default": (bgr, []),  # what the model writes (OpenCV's default filter)
        "rgb": (bgr, every),
        "rgba": (np.dstack([bgr, (x * 3 % 256).astype(np.uint8)]), every),
        "grey": (bgr[:, :, 1], every),
    }
    pngs: dict[str, bytes] = {}
    for name, (image, params) in images.items():
        ok, encoded = cv2.imencode(".png", image, params)
        assert ok
        pngs[name] = encoded.tobytes()
    rgb = bgr[:, :, ::-1]
    return pngs, [[tuple(int(c) for c in rgb[row, col]) for col in range(w)] for row in range(h)]


def test_decodes_pngs_written_by_opencv() -> None:
    pngs, expected = _opencv_pngs()
    w, h = 53, 37

    default = decode_png(pngs["default"])
    assert default.size == (w, h)
    assert [list(r) for r in default.rows] == expected

    # With all filters allowed, libpng's adaptive choice uses every filter type here.
    used = set().union(*(_filter_types(pngs[name]) for name in ("rgb", "rgba", "grey")))
    assert used == {0, 1, 2, 3, 4}

    rgb = decode_png(pngs["rgb"])
    assert [list(r) for r in rgb.rows] == expected

    rgba = decode_png(pngs["rgba"])
    assert [list(r) for r in rgba.rows] == expected

    grey = decode_png(pngs["grey"])
    assert all(grey.pixel(x, y) == (expected[y][x][1],) * 3 for y in range(h) for x in range(w))
