"""Ordinary image files (JPEG, PNG, BMP, TIFF), RGB or grayscale, 8 or 16 bit, into float32 gray.

PIL rather than cv2: PIL refuses truncated files (cv2 silently returns a half-grey image) and
tells us the stored mode, which the dataset check needs (RGB vs grayscale is a class confounder
in the Kaggle set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, UnidentifiedImageError

from tumorlens.data.errors import UnreadableFile
from tumorlens.data.readers.base import Header, ImageReader, Slice, Source, check_not_empty, clean_message, is_bytes

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}

# Channel values of a "grayscale stored as RGB" JPEG differ a little through chroma compression;
# above this spread the pixels really carry colour.
_COLOR_TOLERANCE = 8
# A JPEG ends with the EOI marker and a PNG with its IEND chunk; a file cut short lacks them. Some
# writers append padding after the marker, so the tail is searched, not only the last bytes.
_TAIL_BYTES = 4096
_END_MARKERS = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND"}


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def colour_fraction(rgb: np.ndarray) -> float:
    """Share of pixels that are clearly coloured (HSV saturation > 0.25 and not near black).

    Grayscale MRI stored as RGB JPEG has a little chroma noise, far below this (serve/ood.py
    refuses colour photographs by it)."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return 0.0
    step = max(1, max(rgb.shape[:2]) // 256)  # a subsample is plenty for a share
    small = np.ascontiguousarray(rgb[::step, ::step, :3])
    if small.dtype != np.uint8:
        small = cv2.normalize(small.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    return float(np.mean((hsv[..., 1] > 64) & (hsv[..., 2] > 38)))


class RasterReader(ImageReader):
    """JPEG, PNG, BMP, TIFF through PIL. Header: PIL's lazy open (size and mode, nothing decoded)."""

    name = "image"
    suffixes = tuple(sorted(IMAGE_SUFFIXES))

    def sniff(self, head: bytes) -> bool:
        return head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n"

    def read(self, source: Source) -> Header:
        check_not_empty(source)
        fp = None
        try:
            if is_bytes(source):
                import io

                fp = io.BytesIO(bytes(source))
                im = Image.open(fp)
            else:
                im = Image.open(source)
        except UnidentifiedImageError:
            suffix = "upload" if is_bytes(source) else (Path(source).suffix or "no-suffix")
            raise UnreadableFile(f"not a readable image (unknown or damaged {suffix} data)") from None
        except Image.DecompressionBombError as exc:
            raise UnreadableFile(f"image too large: {clean_message(exc)}", "too_large") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise UnreadableFile(f"damaged image: {clean_message(exc)}") from None
        width, height = im.size
        bands = [b for b in im.getbands() if b not in ("A", "a")]
        meta = {"channels": len(bands), "mode": im.mode, "format": im.format}
        marker = _END_MARKERS.get(im.format or "")
        if marker is not None:
            meta["end_marker"] = _has_tail(source, marker)
        return Header(im.format or "image", 1, int(height), int(width), meta, handle=im)

    def verify(self, header: Header) -> None:
        """Cheap check for open time: a JPEG or PNG without its end marker is decoded now to confirm the damage."""
        if header.meta.get("end_marker") is False:
            self.get_data(header)

    def get_data(self, header: Header) -> list[Slice]:
        im = header.handle
        try:
            im.load()  # decodes now: a truncated file raises here instead of yielding grey rows
            arr, meta = _to_gray(im)
        except UnreadableFile:
            raise
        except Image.DecompressionBombError as exc:
            raise UnreadableFile(f"image too large: {clean_message(exc)}", "too_large") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # PIL signals damage through these (e.g. "image file is truncated", "broken PNG file").
            raise UnreadableFile(f"damaged image: {clean_message(exc)}") from None
        except MemoryError:
            raise UnreadableFile("image too large: out of memory while decoding", "too_large") from None
        meta.update({k: v for k, v in header.meta.items() if k != "end_marker"})
        return [Slice(arr, meta)]


def _has_tail(source: Source, marker: bytes) -> bool:
    if is_bytes(source):
        return marker in bytes(source[-_TAIL_BYTES:])
    try:
        with open(source, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            return marker in fh.read()
    except OSError:
        return False


def _to_gray(im: Image.Image) -> tuple[np.ndarray, dict]:
    mode = im.mode
    meta = {"color": False}
    if mode in ("L", "I", "F") or mode.startswith("I;"):
        arr = np.asarray(im).astype(np.float32)
    elif mode == "1":
        arr = np.asarray(im.convert("L")).astype(np.float32)
    else:
        rgb = im.convert("RGB")
        r, g, b = rgb.split()
        # Done with PIL's C routines: a numpy version costs 10x the decoding itself.
        spread = max(ImageChops.difference(r, g).getextrema()[1], ImageChops.difference(g, b).getextrema()[1])
        meta["color"] = bool(spread > _COLOR_TOLERANCE)
        meta["colour_fraction"] = colour_fraction(np.asarray(rgb)) if meta["color"] else 0.0
        # ITU-R 601-2 luma (PIL's convert("L"); cv2's BGR2GRAY uses the same weights).
        arr = np.asarray(rgb.convert("L"), dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise UnreadableFile(f"unexpected image shape {arr.shape}")
    meta["height"], meta["width"] = int(arr.shape[0]), int(arr.shape[1])
    return arr, meta


READER = RasterReader()


def read_image(path: Source) -> tuple[np.ndarray, dict]:
    """Return (float32 HxW gray image, meta) or raise UnreadableFile.

    meta: channels (as stored, alpha excluded), mode (PIL mode), format, color (True when the
    colour channels really differ, False for gray stored as RGB), colour_fraction (share of
    clearly coloured pixels, for colour modes), height, width.
    """
    (s,) = READER.load(path)
    return s.image, s.meta
