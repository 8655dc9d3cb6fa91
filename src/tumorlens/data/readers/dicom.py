"""DICOM slices (pydicom): modality rescale, MONOCHROME1 inversion, one slice per frame."""

from __future__ import annotations

import numpy as np

from tumorlens.data.errors import UnreadableFile
from tumorlens.data.readers.base import Header, ImageReader, Slice, Source, check_not_empty, clean_message, is_bytes, open_binary

DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class DicomReader(ImageReader):
    """Header: the dataset without decoding pixel data (from a path, the pixel element is not even read)."""

    name = "dicom"
    suffixes = tuple(sorted(DICOM_SUFFIXES))

    def sniff(self, head: bytes) -> bool:
        return len(head) >= 132 and head[128:132] == b"DICM"

    def read(self, source: Source) -> Header:
        import pydicom
        from pydicom.errors import InvalidDicomError

        check_not_empty(source)
        try:
            if is_bytes(source):
                with open_binary(source) as fh:
                    ds = pydicom.dcmread(fh)
            else:  # large elements (the pixel data) are deferred: read from the file when decoded
                ds = pydicom.dcmread(str(source), defer_size="64 KB")
        except InvalidDicomError:
            raise UnreadableFile("not a DICOM file (no DICM header)") from None
        except Exception as exc:  # pydicom raises many types for damaged files; all mean "cannot read"
            raise UnreadableFile(f"damaged DICOM: {clean_message(exc)}") from None
        if not any(tag in ds for tag in _PIXEL_TAGS):
            raise UnreadableFile("DICOM without pixel data", "no_pixels")
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
            n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        except (AttributeError, TypeError, ValueError):
            raise UnreadableFile("damaged DICOM: Rows/Columns missing or invalid") from None
        if rows < 1 or cols < 1 or n_frames < 1:
            raise UnreadableFile(f"damaged DICOM: header says {n_frames} frame(s) of {cols} x {rows} pixels")
        meta = {
            "channels": spp,
            "format": "DICOM",
            "photometric": str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")),
            "modality": str(getattr(ds, "Modality", "")) or None,
            "body_part": str(getattr(ds, "BodyPartExamined", "")).strip() or None,
            "series_uid": str(getattr(ds, "SeriesInstanceUID", "")) or None,
            "instance_number": _int_or_none(getattr(ds, "InstanceNumber", None)),
            "patient_id": str(getattr(ds, "PatientID", "")).strip() or None,
            "n_frames": n_frames,
        }
        return Header("DICOM", n_frames, rows, cols, meta, handle=ds)

    def get_data(self, header: Header) -> list[Slice]:
        from pydicom.pixels import apply_modality_lut

        ds = header.handle
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # a truncated element, or a compressed transfer syntax without its decoder plug-in
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            name = getattr(syntax, "name", syntax)
            raise UnreadableFile(f"cannot decode DICOM pixel data (transfer syntax {name}): {clean_message(exc)}") from None
        base = header.meta
        n_frames, photometric = base["n_frames"], base["photometric"]
        # Normalise to (frames, H, W[, C]).
        frames = pixels if n_frames > 1 else pixels[None]
        colour = 0.0
        if base["channels"] == 1:
            # Rescale slope/intercept (or a modality LUT) gives the stored values their physical meaning.
            frames = np.asarray(apply_modality_lut(frames, ds), dtype=np.float32)
            if photometric == "MONOCHROME1":
                # MONOCHROME1: low values are displayed bright. Invert within the value range so that,
                # as in every other source, bright means bright.
                frames = frames.max() + frames.min() - frames
        else:
            from tumorlens.data.readers.images import colour_fraction

            colour = colour_fraction(frames[0])
            rgb = frames.astype(np.float32)
            frames = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        out = []
        for i, frame in enumerate(frames):
            meta = dict(base)
            if base["channels"] != 1:
                meta["colour_fraction"] = colour
            if n_frames > 1:
                meta["frame_index"] = i
                meta["slice_index"] = i
            meta["height"], meta["width"] = int(frame.shape[0]), int(frame.shape[1])
            out.append(Slice(np.ascontiguousarray(frame, dtype=np.float32), meta))
        return out


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


READER = DicomReader()


def read_dicom(path: Source) -> list[tuple[np.ndarray, dict]]:
    """Return one (float32 image, meta) per frame, or raise UnreadableFile."""
    return [(s.image, s.meta) for s in READER.load(path)]
