"""NIfTI volumes (nibabel): one slice per axial plane, in a fixed display orientation.

The volume is reoriented to RAS+ (nibabel's closest canonical), so axis 2 is the
inferior->superior axis whatever the scanner stored; each slice is shown with anterior at the
top and the patient's right on the image's left (radiological convention, as in the 2-D sets).
A 4-D series contributes its first volume only (meta["volumes"] says how many there were).
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np

from tumorlens.data.errors import UnreadableFile
from tumorlens.data.readers.base import Header, ImageReader, Slice, Source, check_not_empty, clean_message, is_bytes


def is_nifti_file(path: Path) -> bool:
    return READER.verify_suffix(path)


def nifti_kind(head: bytes) -> int:
    """348 (NIfTI-1 single file) or 540 (NIfTI-2) from the size field and the magic, else 0."""
    for size, magic_at, magic in ((348, slice(344, 348), b"n+1\x00"), (540, slice(4, 12), b"n+2\x00\r\n\x1a\n")):
        if len(head) >= size and head[magic_at] == magic:
            if size in (struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]):
                return size
    return 0


class NiftiReader(ImageReader):
    """Header: nibabel's lazy image (header parsed, voxels behind a proxy); the orientation from the affine."""

    name = "nifti"
    suffixes = (".nii", ".nii.gz")

    def sniff(self, head: bytes) -> bool:
        return bool(nifti_kind(head))

    def read(self, source: Source) -> Header:
        import nibabel as nib

        check_not_empty(source)
        try:
            if is_bytes(source):
                data = bytes(source)
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                kind = nifti_kind(data)
                if not kind:
                    raise UnreadableFile("not a readable NIfTI volume: no NIfTI-1 or NIfTI-2 header")
                klass = nib.Nifti1Image if kind == 348 else nib.Nifti2Image
                img = klass.from_bytes(data)
                stored = len(data)
            else:
                img = nib.load(str(source))
                stored = None if str(source).lower().endswith(".gz") else Path(source).stat().st_size
            shape = tuple(int(s) for s in img.shape)
        except UnreadableFile:
            raise
        except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib errors... all mean "damaged"
            raise UnreadableFile(f"not a readable NIfTI volume: {clean_message(exc)}") from None
        if not 2 <= len(shape) <= 4 or min(shape) < 1:
            raise UnreadableFile(f"expected a 2-D, 3-D or 4-D volume, got shape {shape}", "unsupported")
        ornt = nib.orientations.io_orientation(img.affine)
        spatial = shape[:3] if len(shape) > 2 else shape + (1,)
        # The reoriented shape without touching the voxels: orient a zero-stride stand-in.
        oriented = nib.orientations.apply_orientation(np.broadcast_to(np.zeros((), np.uint8), spatial), ornt).shape
        header = img.header
        needed = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
        meta = {
            "channels": 1,
            "format": "NIfTI",
            "shape": shape,
            "n_slices": int(oriented[2]),
            "volumes": int(shape[3]) if len(shape) == 4 else 1,
            "voxel_size": _voxel_size(img, ornt, spatial),
            "bytes_needed": needed,
            "bytes_stored": stored,
        }
        return Header("NIfTI", int(oriented[2]), int(oriented[1]), int(oriented[0]), meta, handle=(img, ornt))

    def verify(self, header: Header) -> None:
        _check_length(header)

    def get_data(self, header: Header) -> list[Slice]:
        import nibabel as nib

        _check_length(header)
        img, ornt = header.handle
        shape = header.meta["shape"]
        try:
            proxy = img.dataobj
            first = np.asanyarray(proxy[..., 0] if len(shape) == 4 else proxy[...])
            if first.ndim == 2:
                first = first[:, :, None]
            data = np.asarray(nib.orientations.apply_orientation(first, ornt), dtype=np.float32)
        except MemoryError:
            raise UnreadableFile("NIfTI volume too large: out of memory while decoding", "too_large") from None
        except Exception as exc:  # unusual data types (complex, RGB), truncated data, inconsistent headers
            raise UnreadableFile(f"not a readable NIfTI volume: {clean_message(exc)}") from None
        out = []
        base = {k: v for k, v in header.meta.items() if k not in ("bytes_needed", "bytes_stored", "shape")}
        for k in range(data.shape[2]):
            # (x, y) in RAS+ -> rows from anterior to posterior, columns from patient right to left.
            sl = np.ascontiguousarray(data[::-1, ::-1, k].T)
            meta = dict(base, slice_index=k, height=int(sl.shape[0]), width=int(sl.shape[1]))
            out.append(Slice(sl, meta))
        return out


def _check_length(header: Header) -> None:
    stored, needed = header.meta.get("bytes_stored"), header.meta["bytes_needed"]
    if stored is not None and stored < needed:
        raise UnreadableFile(f"truncated NIfTI volume: {stored} bytes, the header needs {needed}")


def _voxel_size(img, ornt, spatial) -> tuple[float, ...]:
    """Voxel sizes in the reoriented axis order (what nibabel's canonical image's header says)."""
    import nibabel as nib

    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if len(zooms) < 3:
        return zooms
    new_aff = img.affine.dot(nib.orientations.inv_ornt_aff(ornt, spatial))
    return tuple(float(z) for z in nib.affines.voxel_sizes(new_aff))


READER = NiftiReader()


def read_nifti(path: Source) -> list[tuple[np.ndarray, dict]]:
    """Return one (float32 image, meta with slice_index) per axial slice, or raise UnreadableFile."""
    return [(s.image, s.meta) for s in READER.load(path)]
