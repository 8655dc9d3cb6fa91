"""Turning validated upload bytes into 2-D float32 slices, checking sizes from the headers first.

Why not the dataset readers in tumorlens.data.readers: they read paths, and uploads never touch
the disk; the conventions here follow them (ITU-R 601 luma for RGB, modality LUT and MONOCHROME1
inversion for DICOM, RAS+ reorientation and the same display orientation for NIfTI) so a slice
served is the slice the model was trained on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from tumorlens.serve.errors import ServiceError
from tumorlens.serve.settings import ServeSettings
from tumorlens.serve.upload import nifti_header_size, unwrap

MIN_SIDE = 16  # a smaller "slice" cannot hold a head at any useful resolution


@dataclass
class DecodedInput:
    format: str  # JPEG, PNG, DICOM, NIfTI
    images: list[np.ndarray]  # float32 (H, W) slices, intensities as stored
    colour_fraction: float = 0.0  # share of clearly coloured pixels (0 for grayscale data)
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # facts the caller should know (e.g. first volume only)

    @property
    def is_volume(self) -> bool:
        return self.format == "NIfTI" or len(self.images) > 1


def corrupt(what: str, detail: str = "") -> ServiceError:
    tail = f" ({detail})" if detail else ""
    return ServiceError(422, "corrupt_image", f"cannot decode the {what}: damaged or truncated data{tail}")


def check_plane(width: int, height: int, settings: ServeSettings, what: str = "image") -> None:
    """Refuse absurd sizes from the header alone, before any pixel is decompressed."""
    if width <= 0 or height <= 0:
        raise corrupt(what, f"header says {width} x {height} pixels")
    if width * height > settings.max_pixels or max(width, height) > settings.max_side:
        raise ServiceError(
            413, "image_too_large",
            f"the {what} is {width} x {height} pixels; the limit is {settings.max_pixels:,} pixels "
            f"and {settings.max_side} per side (MRI slices are rarely above 1024 x 1024)",
        )
    if min(width, height) < MIN_SIDE:
        raise ServiceError(422, "image_too_small", f"the {what} is {width} x {height} pixels; need at least {MIN_SIDE} per side")


def colour_fraction(rgb: np.ndarray) -> float:
    """Share of pixels that are clearly coloured (HSV saturation > 0.25 and not near black).

    Grayscale MRI stored as RGB JPEG has a little chroma noise, far below this (see ood.py)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return 0.0
    step = max(1, max(rgb.shape[:2]) // 256)  # a subsample is plenty for a share
    small = np.ascontiguousarray(rgb[::step, ::step, :3])
    if small.dtype != np.uint8:
        small = cv2.normalize(small.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    return float(np.mean((hsv[..., 1] > 64) & (hsv[..., 2] > 38)))


def luma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float32)
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


# -- JPEG and PNG ------------------------------------------------------------------------------

def decode_raster(data: bytes, fmt: str, settings: ServeSettings) -> DecodedInput:
    name = fmt.upper()
    try:
        im = Image.open(io.BytesIO(data), formats=[name])
    except Image.DecompressionBombError as exc:
        raise ServiceError(413, "image_too_large", f"the {name} image is far too large in pixels ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise corrupt(f"{name} image", str(exc)) from None
    with im:
        width, height = im.size
        check_plane(width, height, settings, f"{name} image")
        try:
            im.load()  # only now are pixels decompressed; a truncated file raises here
            arr, colour, mode = _raster_to_gray(im)
        except Image.DecompressionBombError as exc:
            raise ServiceError(413, "image_too_large", f"the {name} image is far too large in pixels ({exc})") from None
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise corrupt(f"{name} image", str(exc)) from None
    meta = {"width": width, "height": height, "mode": mode, "slices": 1}
    return DecodedInput(name, [arr], colour, meta)


def _raster_to_gray(im: Image.Image) -> tuple[np.ndarray, float, str]:
    mode = im.mode
    if mode in ("L", "I", "F") or mode.startswith("I;"):
        return np.asarray(im).astype(np.float32), 0.0, mode
    if mode == "1":
        return np.asarray(im.convert("L")).astype(np.float32), 0.0, mode
    if mode == "LA":
        return np.asarray(im.getchannel("L")).astype(np.float32), 0.0, mode
    rgb = np.asarray(im.convert("RGB"))
    return luma(rgb), colour_fraction(rgb), mode


# -- DICOM -------------------------------------------------------------------------------------

def decode_dicom(data: bytes, settings: ServeSettings) -> DecodedInput:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types for damaged files; all mean "cannot read"
        raise corrupt("DICOM file", str(exc)[:200]) from None
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ServiceError(422, "dicom_without_pixels",
                           "the DICOM file has no pixel data (a structured report, or a header only)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise corrupt("DICOM file", "Rows/Columns missing or invalid") from None
    check_plane(cols, rows, settings, "DICOM image")
    if frames < 1 or frames > settings.max_slices or rows * cols * frames > settings.max_voxels:
        raise ServiceError(413, "image_too_large",
                           f"the DICOM file has {frames} frames of {cols} x {rows}; the limit is "
                           f"{settings.max_slices} frames and {settings.max_voxels:,} voxels")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # a truncated element, or a compressed syntax without its decoder
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise corrupt(f"DICOM pixel data (transfer syntax {name})", str(exc)[:200]) from None
    stack = pixels if frames > 1 else pixels[None]
    colour = 0.0
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if spp == 1:
        stack = np.asarray(apply_modality_lut(stack, ds), dtype=np.float32)
        if photometric == "MONOCHROME1":  # low values display bright: invert so bright means bright
            stack = stack.max() + stack.min() - stack
    else:
        colour = colour_fraction(stack[0])
        stack = luma(stack)
    meta = {
        "width": cols, "height": rows, "slices": frames, "photometric": photometric,
        "modality": (str(getattr(ds, "Modality", "")) or None),
        "body_part": (str(getattr(ds, "BodyPartExamined", "")).strip() or None),
    }
    return DecodedInput("DICOM", [np.ascontiguousarray(f, dtype=np.float32) for f in stack], colour, meta)


# -- NIfTI -------------------------------------------------------------------------------------

def decode_nifti(data: bytes, settings: ServeSettings) -> DecodedInput:
    import nibabel as nib

    size = nifti_header_size(data)
    klass = nib.Nifti1Image if size == 348 else nib.Nifti2Image
    try:
        header = klass.header_class.from_fileobj(io.BytesIO(data[:size + 4]))
        shape = tuple(int(s) for s in header.get_data_shape())
    except Exception as exc:  # nibabel's HeaderDataError and friends
        raise corrupt("NIfTI header", str(exc)[:200]) from None
    if not 2 <= len(shape) <= 4 or min(shape) < 1:
        raise ServiceError(422, "unsupported_volume", f"expected a 2-D, 3-D or 4-D NIfTI volume, got shape {shape}")
    plane = shape[:2]
    n_slices = shape[2] if len(shape) > 2 else 1
    voxels = int(np.prod(shape[:3]))
    # Reorientation can swap axes, so every in-plane pair must pass the per-slice limit.
    for a, b in ((shape[0], shape[1]), (shape[0], n_slices), (shape[1], n_slices)):
        if a * b > settings.max_pixels or max(a, b) > settings.max_side:
            raise ServiceError(413, "image_too_large", f"the NIfTI volume is {shape}; planes above "
                               f"{settings.max_pixels:,} pixels are refused")
    if voxels > settings.max_voxels or max(shape[:3]) > max(settings.max_slices, settings.max_side):
        raise ServiceError(413, "volume_too_large",
                           f"the NIfTI volume is {shape}; the limit is {settings.max_voxels:,} voxels")
    needed = int(header.get_data_offset()) + voxels * header.get_data_dtype().itemsize
    if needed > len(data):
        raise corrupt("NIfTI volume", f"{len(data)} bytes, the header needs {needed}")
    try:
        img = nib.as_closest_canonical(klass.from_bytes(data))
        proxy = img.dataobj
        vol = np.asarray(proxy[..., 0] if len(shape) == 4 else proxy[...], dtype=np.float32)
    except Exception as exc:  # unusual data types (complex, RGB) or inconsistent headers
        raise corrupt("NIfTI volume", str(exc)[:200]) from None
    if vol.ndim == 2:
        vol = vol[:, :, None]
    if vol.shape[2] > settings.max_slices:
        raise ServiceError(413, "volume_too_large", f"the NIfTI volume has {vol.shape[2]} slices; the limit is {settings.max_slices}")
    if min(vol.shape[:2]) < 4:
        raise ServiceError(422, "image_too_small", f"the NIfTI slices are {vol.shape[0]} x {vol.shape[1]} voxels")
    # Same display orientation as tumorlens.data.readers.nifti: anterior up, patient right on the left.
    slices = [np.ascontiguousarray(vol[::-1, ::-1, k].T) for k in range(vol.shape[2])]
    notes = []
    if len(shape) == 4 and shape[3] > 1:
        notes.append(f"4-D series of {shape[3]} volumes: only the first volume is used")
    meta = {"width": slices[0].shape[1], "height": slices[0].shape[0], "slices": len(slices),
            "voxel_size": [float(z) for z in img.header.get_zooms()[:3]]}
    return DecodedInput("NIfTI", slices, 0.0, meta, notes)


def decode_upload(data: bytes, settings: ServeSettings) -> DecodedInput:
    """Sniff, size-check and decode; every failure is a ServiceError with a 4xx status."""
    payload, fmt = unwrap(data, max_decompressed=settings.max_voxels * 8 + 1024 * 1024)
    if fmt in ("jpeg", "png"):
        decoded = decode_raster(payload, fmt, settings)
    elif fmt == "dicom":
        decoded = decode_dicom(payload, settings)
    else:
        decoded = decode_nifti(payload, settings)
    for k, img in enumerate(decoded.images):
        if not np.isfinite(img).all():  # NaN or inf voxels: keep the rest, treat them as background
            decoded.images[k] = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
            if "non-finite values were set to 0" not in decoded.notes:
                decoded.notes.append("non-finite values were set to 0")
    return decoded
