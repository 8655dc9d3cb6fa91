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

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}

# Channel values of a "grayscale stored as RGB" JPEG differ a little through chroma compression;
# above this spread the pixels really carry colour.
_COLOR_TOLERANCE = 8


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> tuple[np.ndarray, dict]:
    """Return (float32 HxW gray image, meta) or raise UnreadableFile.

    meta: channels (as stored, alpha excluded), mode (PIL mode), format, color (True when the
    colour channels really differ, False for gray stored as RGB), height, width.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UnreadableFile("empty file (0 bytes)")
        with Image.open(path) as im:
            im.load()  # decodes now: a truncated file raises here instead of yielding grey rows
            return _to_gray(im)
    except UnreadableFile:
        raise
    except UnidentifiedImageError:
        raise UnreadableFile(f"not a readable image (unknown or damaged {path.suffix or 'no-suffix'} data)") from None
    except Image.DecompressionBombError as exc:
        raise UnreadableFile(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # PIL signals damage through these (e.g. "image file is truncated", "broken PNG file").
        raise UnreadableFile(f"damaged image: {exc}") from None


def _to_gray(im: Image.Image) -> tuple[np.ndarray, dict]:
    mode = im.mode
    bands = [b for b in im.getbands() if b not in ("A", "a")]
    meta = {"channels": len(bands), "mode": mode, "format": im.format, "color": False}
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
        # ITU-R 601-2 luma (PIL's convert("L"); cv2's BGR2GRAY uses the same weights).
        arr = np.asarray(rgb.convert("L"), dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise UnreadableFile(f"unexpected image shape {arr.shape}")
    meta["height"], meta["width"] = int(arr.shape[0]), int(arr.shape[1])
    return arr, meta
