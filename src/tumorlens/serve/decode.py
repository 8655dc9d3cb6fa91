"""Turning validated upload bytes into 2-D float32 slices, checking sizes from the headers first.

The pixels come from the dataset readers (tumorlens.data.readers, the same table open_dataset
uses): an upload gives the slices the same file gives on disk, so a slice served is the slice the
model was trained on. This module keeps only what a service adds: size limits checked from the
header before any pixel is decompressed, and each reader failure mapped to a 4xx answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tumorlens.data.errors import UnreadableFile
from tumorlens.data.readers import READERS, Header
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.settings import ServeSettings
from tumorlens.serve.upload import unwrap

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


# -- size limits, from the header ---------------------------------------------------------------

def check_raster(header: Header, settings: ServeSettings, what: str) -> None:
    check_plane(header.width, header.height, settings, what)


def check_dicom(header: Header, settings: ServeSettings, what: str) -> None:
    rows, cols, frames = header.height, header.width, header.n_slices
    check_plane(cols, rows, settings, "DICOM image")
    if frames < 1 or frames > settings.max_slices or rows * cols * frames > settings.max_voxels:
        raise ServiceError(413, "image_too_large",
                           f"the DICOM file has {frames} frames of {cols} x {rows}; the limit is "
                           f"{settings.max_slices} frames and {settings.max_voxels:,} voxels")


def check_nifti(header: Header, settings: ServeSettings, what: str) -> None:
    shape = header.meta["shape"]
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
    if header.n_slices > settings.max_slices:
        raise ServiceError(413, "volume_too_large",
                           f"the NIfTI volume has {header.n_slices} slices; the limit is {settings.max_slices}")
    if min(header.height, header.width) < 4:
        raise ServiceError(422, "image_too_small", f"the NIfTI slices are {header.width} x {header.height} voxels")


# format as sniffed by upload.unwrap -> (registry name, what the messages call it, size check)
FORMATS = {
    "jpeg": ("image", "JPEG image", check_raster),
    "png": ("image", "PNG image", check_raster),
    "dicom": ("dicom", "DICOM file", check_dicom),
    "nifti": ("nifti", "NIfTI volume", check_nifti),
}


def refusal(exc: UnreadableFile, what: str) -> ServiceError:
    """A reader's failure as the service's answer (the reason names the problem, never a file object)."""
    if exc.kind == "too_large":
        return ServiceError(413, "image_too_large", f"the {what} is far too large in pixels ({exc})")
    if exc.kind == "no_pixels":
        return ServiceError(422, "dicom_without_pixels",
                            "the DICOM file has no pixel data (a structured report, or a header only)")
    if exc.kind == "unsupported":
        return ServiceError(422, "unsupported_volume", f"cannot use the {what}: {exc}")
    return corrupt(what, str(exc))


def decode_payload(payload: bytes, fmt: str, settings: ServeSettings) -> DecodedInput:
    """Header, size limits, then pixels, through the shared reader of the sniffed format."""
    name, what, check = FORMATS[fmt]
    reader = READERS[name]
    try:
        with reader.read(payload) as header:
            check(header, settings, what)
            slices = reader.get_data(header)
    except UnreadableFile as exc:
        raise refusal(exc, what) from None
    first = slices[0].meta
    meta = {"width": slices[0].image.shape[1], "height": slices[0].image.shape[0], "slices": len(slices)}
    notes = []
    if name == "image":
        meta["mode"] = first.get("mode")
        label = fmt.upper()
    elif name == "dicom":
        meta.update(photometric=first.get("photometric"), modality=first.get("modality"),
                    body_part=first.get("body_part"))
        label = "DICOM"
    else:
        meta["voxel_size"] = [float(z) for z in first.get("voxel_size", ())]
        if first.get("volumes", 1) > 1:
            notes.append(f"4-D series of {first['volumes']} volumes: only the first volume is used")
        label = "NIfTI"
    return DecodedInput(label, [s.image for s in slices], float(first.get("colour_fraction", 0.0)), meta, notes)


def decode_upload(data: bytes, settings: ServeSettings) -> DecodedInput:
    """Sniff, size-check and decode; every failure is a ServiceError with a 4xx status."""
    payload, fmt = unwrap(data, max_decompressed=settings.max_voxels * 8 + 1024 * 1024)
    decoded = decode_payload(payload, fmt, settings)
    for k, img in enumerate(decoded.images):
        if not np.isfinite(img).all():  # NaN or inf voxels: keep the rest, treat them as background
            decoded.images[k] = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
            if "non-finite values were set to 0" not in decoded.notes:
                decoded.notes.append("non-finite values were set to 0")
    return decoded
