"""Tiny PNG helpers for tests, standard library only (zlib + struct).

Writes 8-bit RGB PNGs (colour type 2, no interlace, filter type 0 on every row)
and reads 8-bit non-interlaced PNGs in greyscale, grey+alpha, RGB, RGBA and
palette form with any of the five row filters, which is what OpenCV and Pillow
produce. Alpha is dropped on read; pixels come back as (r, g, b) tuples.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive

# Colour type -> samples per pixel (8-bit only).
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


@dataclass(frozen=True)
class Image:
    """A decoded image: `rows[y][x]` is an (r, g, b) tuple."""

    width: int
    height: int
    rows: tuple[tuple[RGB, ...], ...]

    def pixel(self, x: int, y: int) -> RGB:
        return self.rows[y][x]

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


# ---------------------------------------------------------------- encoding


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, rows: list[list[RGB]] | tuple) -> bytes:
    """Encode rows of (r, g, b) tuples as an 8-bit RGB PNG."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    if len(rows) != height:
        raise ValueError(f"expected {height} rows, got {len(rows)}")
    raw = bytearray()
    for row in rows:
        if len(row) != width:
            raise ValueError(f"expected {width} pixels per row, got {len(row)}")
        raw.append(0)  # filter type 0 (None)
        for r, g, b in row:
            raw += bytes((r, g, b))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(raw), 6)) + _chunk(b"IEND", b"")


def _inside(x: int, y: int, box: Box) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= x < x1 and y0 <= y < y1


def solid_png(width: int, height: int, rgb: RGB) -> bytes:
    """A width x height PNG filled with one colour."""
    row = [tuple(rgb)] * width
    return encode_png(width, height, [row] * height)


def png_with_square(width: int, height: int, background_rgb: RGB, square_rgb: RGB, box: Box) -> bytes:
    """A PNG of `background_rgb` with the rectangle `box` = (x0, y0, x1, y1) in `square_rgb`."""
    bg, sq = tuple(background_rgb), tuple(square_rgb)
    rows = [[sq if _inside(x, y, box) else bg for x in range(width)] for y in range(height)]
    return encode_png(width, height, rows)


def mask_png(width: int, height: int, box: Box) -> bytes:
    """An inpainting mask: white (inpaint) inside `box`, black elsewhere."""
    return png_with_square(width, height, (0, 0, 0), (255, 255, 255), box)


def data_uri(png_bytes: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(png_bytes).decode("ascii")


def from_data_uri(uri: str) -> bytes:
    """The bytes of a base64 `data:` URI (the inverse of `data_uri`)."""
    if not uri.startswith("data:"):
        raise ValueError("not a data: URI")
    header, _, payload = uri.partition(",")
    if not header.endswith(";base64"):
        raise ValueError("only base64 data: URIs are supported")
    return base64.b64decode(payload)


# ---------------------------------------------------------------- decoding


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    if pb <= pc:
        return b
    return c


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> list[bytearray]:
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise ValueError("truncated PNG image data")
    rows: list[bytearray] = []
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += stride + 1
        if ftype == 0:
            pass
        elif ftype == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:  # Up
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:  # Paeth
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xFF
        else:
            raise ValueError(f"bad PNG filter type {ftype}")
        rows.append(line)
        prev = line
    return rows


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit, non-interlaced PNG into an `Image` of RGB tuples."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    pos = len(PNG_SIGNATURE)
    header = None
    palette: list[RGB] = []
    idat = bytearray()
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError("truncated PNG chunk")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = [tuple(body[i : i + 3]) for i in range(0, len(body) - 2, 3)]  # type: ignore[misc]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG has no IHDR")
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 8:
        raise ValueError(f"only 8-bit PNGs are supported, got bit depth {depth}")
    if interlace != 0:
        raise ValueError("interlaced PNGs are not supported")
    if colour not in _CHANNELS:
        raise ValueError(f"bad PNG colour type {colour}")
    if colour == 3 and not palette:
        raise ValueError("palette PNG has no PLTE chunk")
    channels = _CHANNELS[colour]
    lines = _unfilter(zlib.decompress(bytes(idat)), width, height, channels)

    out: list[tuple[RGB, ...]] = []
    for line in lines:
        if colour == 2:
            row = tuple(tuple(line[i : i + 3]) for i in range(0, len(line), 3))
        elif colour == 6:
            row = tuple(tuple(line[i : i + 3]) for i in range(0, len(line), 4))
        elif colour == 0:
            row = tuple((v, v, v) for v in line)
        elif colour == 4:
            row = tuple((line[i], line[i], line[i]) for i in range(0, len(line), 2))
        else:  # palette
            row = tuple(palette[v] for v in line)
        out.append(row)  # type: ignore[arg-type]
    return Image(width, height, tuple(out))


def pixel(png_bytes: bytes, x: int, y: int) -> RGB:
    """The (r, g, b) of pixel (x, y) of a PNG."""
    return decode_png(png_bytes).pixel(x, y)


def png_size(png_bytes: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk without decoding the pixels."""
    if not png_bytes.startswith(PNG_SIGNATURE) or png_bytes[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", png_bytes[16:24])
    return width, height


def colour_distance(a: RGB, b: RGB) -> int:
    """Largest per-channel difference between two colours."""
    return max(abs(int(p) - int(q)) for p, q in zip(a, b, strict=True))
