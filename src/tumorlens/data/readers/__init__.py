"""File readers: one interface (base.ImageReader: read -> Header, get_data -> Slices) and one table.

READERS maps a format name to its reader; open_dataset and the service's decode both go through
it, so a file on disk and the same file uploaded give the same slices.
"""

from __future__ import annotations

from pathlib import Path

from tumorlens.data.readers.base import Header, ImageReader, Slice, Source
from tumorlens.data.readers.dicom import READER as DICOM
from tumorlens.data.readers.figshare import MAT_READER as MAT
from tumorlens.data.readers.images import READER as RASTER
from tumorlens.data.readers.nifti import READER as NIFTI

# Order matters for suffix matching only in that every suffix belongs to one reader.
READERS: dict[str, ImageReader] = {r.name: r for r in (RASTER, NIFTI, MAT, DICOM)}


def reader_for_path(path: Path) -> ImageReader | None:
    """The reader a file's name says, else the one its first bytes say (DICOM files often have no suffix)."""
    for reader in READERS.values():
        if reader.verify_suffix(path):
            return reader
    if path.suffix:  # an unknown suffix is not data (notes, archives...): not opened
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return None
    return reader_for_bytes(head)


def reader_for_bytes(head: bytes) -> ImageReader | None:
    """The reader whose magic bytes match the start of a file."""
    return next((r for r in READERS.values() if r.sniff(head)), None)


__all__ = ["READERS", "Header", "ImageReader", "Slice", "Source", "reader_for_bytes", "reader_for_path"]
