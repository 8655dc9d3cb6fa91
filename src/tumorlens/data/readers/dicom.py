"""DICOM slices (pydicom): modality rescale, MONOCHROME1 inversion, one slice per frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorlens.data.errors import UnreadableFile

DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}


def looks_like_dicom(path: Path) -> bool:
    """By suffix, or by the 'DICM' magic at byte 128 (DICOM files often have no suffix)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dicom(path: str | Path) -> list[tuple[np.ndarray, dict]]:
    """Return one (float32 image, meta) per frame, or raise UnreadableFile."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UnreadableFile("empty file (0 bytes)")
        ds = pydicom.dcmread(path)
    except UnreadableFile:
        raise
    except InvalidDicomError:
        raise UnreadableFile("not a DICOM file (no DICM header)") from None
    except Exception as exc:  # pydicom raises many types for damaged files; all mean "cannot read"
        raise UnreadableFile(f"damaged DICOM: {exc}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnreadableFile("DICOM without pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # e.g. a compressed transfer syntax without its decoder plug-in
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise UnreadableFile(f"cannot decode DICOM pixel data (transfer syntax {name}): {exc}") from None

    samples_per_pixel = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    # Normalise to (frames, H, W[, C]).
    frames = pixels if n_frames > 1 else pixels[None]
    if samples_per_pixel == 1:
        # Rescale slope/intercept (or a modality LUT) gives the stored values their physical meaning.
        frames = np.asarray(apply_modality_lut(frames, ds), dtype=np.float32)
        if photometric == "MONOCHROME1":
            # MONOCHROME1: low values are displayed bright. Invert within the value range so that,
            # as in every other source, bright means bright.
            frames = frames.max() + frames.min() - frames
    else:
        rgb = frames.astype(np.float32)
        frames = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114

    base = {
        "channels": samples_per_pixel,
        "format": "DICOM",
        "photometric": photometric,
        "modality": str(getattr(ds, "Modality", "")) or None,
        "series_uid": str(getattr(ds, "SeriesInstanceUID", "")) or None,
        "instance_number": _int_or_none(getattr(ds, "InstanceNumber", None)),
        "patient_id": str(getattr(ds, "PatientID", "")).strip() or None,
        "n_frames": n_frames,
    }
    out = []
    for i, frame in enumerate(frames):
        meta = dict(base)
        if n_frames > 1:
            meta["frame_index"] = i
            meta["slice_index"] = i
        meta["height"], meta["width"] = int(frame.shape[0]), int(frame.shape[1])
        out.append((np.ascontiguousarray(frame, dtype=np.float32), meta))
    return out


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
