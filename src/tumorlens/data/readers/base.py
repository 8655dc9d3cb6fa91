"""The one reader interface behind dataset files and service uploads (after MONAI's ImageReader).

A reader takes a *source*, a path or the bytes of a file, in two steps:
- ``read(source) -> Header``: parses the header only (sizes, slice count, channels, patient id,
  label...), no pixel is decompressed. open_dataset calls it on every file to validate it cheaply
  and to know how many slices it holds; the service calls it to check sizes before decoding.
- ``get_data(header) -> list[Slice]``: decodes the pixels into float32 (H, W) slices in the display
  conventions every later stage relies on (gray by ITU-R 601 luma, DICOM modality LUT and
  MONOCHROME1 inversion, NIfTI reoriented to RAS+ with anterior up).
``verify_suffix(name)`` and ``sniff(head)`` pick the reader; the table is ``READERS`` in
readers/__init__.py. Every failure is an UnreadableFile whose message names what is wrong (never
the repr of a file object), and whose ``kind`` tells a caller how to answer (see errors.py).

Why not MONAI's readers themselves: they return channel-first arrays in MONAI's own orientation
conventions and do not read Cheng's .mat files, PIL's image modes (the RGB-vs-gray facts the
dataset check needs) or bytes; the interface shape is theirs, the conventions are tumorlens'.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

import numpy as np

from tumorlens.data.errors import UnreadableFile

Source = Union[str, Path, bytes, bytearray, memoryview]


@dataclass
class Slice:
    """One decoded 2-D slice: float32 (H, W) intensities as stored, its facts, its tumor mask if the file has one."""

    image: np.ndarray
    meta: dict
    mask: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes + (self.mask.nbytes if self.mask is not None else 0))


@dataclass
class Header:
    """What a file says about itself before any pixel is decoded.

    format: "JPEG", "PNG", "DICOM", "NIfTI", "MATLAB v7.3", ...
    n_slices: slices the file yields (frames of a DICOM, axial planes of a NIfTI volume).
    height, width: of each slice, in display orientation.
    meta: per-file facts (channels, mode, patient_id, label, has_mask, ...), copied into every slice's meta.
    handle: the reader's parsed object, used by get_data; released by close().
    """

    format: str
    n_slices: int
    height: int
    width: int
    meta: dict = field(default_factory=dict)
    handle: Any = None
    source_name: str = ""

    def close(self) -> None:
        close = getattr(self.handle, "close", None)
        if callable(close):
            close()
        self.handle = None

    def __enter__(self) -> "Header":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_bytes(source: Source) -> bool:
    return isinstance(source, (bytes, bytearray, memoryview))


def source_name(source: Source) -> str:
    """How messages name a source: its path, or 'the uploaded data' (never a BytesIO repr)."""
    return "the uploaded data" if is_bytes(source) else str(source)


def open_binary(source: Source):
    """A binary file object for a path or bytes (the caller closes it)."""
    if is_bytes(source):
        return io.BytesIO(bytes(source))
    return open(source, "rb")


def check_not_empty(source: Source) -> None:
    try:
        size = len(source) if is_bytes(source) else Path(source).stat().st_size
    except OSError as exc:
        raise UnreadableFile(f"cannot open: {exc.strerror or exc}") from None
    if size == 0:
        raise UnreadableFile("empty file (0 bytes)")


def clean_message(exc: BaseException, limit: int = 200) -> str:
    """A library's error text without object reprs such as <_io.BytesIO object at 0x7f...>."""
    import re

    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", str(exc))
    return text[:limit]


class ImageReader(ABC):
    """One file format. Subclasses set name and suffixes and implement read and get_data."""

    name: ClassVar[str]  # registry key: "image", "dicom", "nifti", "mat"
    suffixes: ClassVar[tuple[str, ...]] = ()

    def verify_suffix(self, filename: str | Path) -> bool:
        """True when the file name says this format (compared lower-case, multi-part suffixes included)."""
        name = Path(filename).name.lower()
        return any(name.endswith(s) for s in self.suffixes)

    def sniff(self, head: bytes) -> bool:
        """True when the leading bytes say this format (for files without a telling suffix)."""
        return False

    @abstractmethod
    def read(self, source: Source) -> Header:
        """Parse the header of a path or bytes; raise UnreadableFile. No pixel is decoded."""

    @abstractmethod
    def get_data(self, header: Header) -> list[Slice]:
        """Decode the pixels behind a header into slices; raise UnreadableFile."""

    def load(self, source: Source) -> list[Slice]:
        """read + get_data in one call, the header closed afterwards."""
        with self.read(source) as header:
            return self.get_data(header)
