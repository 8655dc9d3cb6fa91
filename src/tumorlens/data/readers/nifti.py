"""NIfTI volumes (nibabel): one slice per axial plane, in a fixed display orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorlens.data.errors import UnreadableFile


def is_nifti_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_nifti(path: str | Path) -> list[tuple[np.ndarray, dict]]:
    """Return one (float32 image, meta with slice_index) per axial slice, or raise UnreadableFile.

    The volume is first reoriented to RAS+ (nibabel's closest canonical), so axis 2 is the
    inferior->superior axis whatever the scanner stored; each slice is shown with anterior at the
    top and the patient's right on the image's left (radiological convention, as in the 2-D sets).
    A 4-D series contributes its first volume only (meta["volumes"] says how many there were).
    """
    import nibabel as nib

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UnreadableFile("empty file (0 bytes)")
        img = nib.as_closest_canonical(nib.load(str(path)))
        shape = img.shape
        if len(shape) < 2 or len(shape) > 4:
            raise UnreadableFile(f"expected a 2-D, 3-D or 4-D volume, got shape {shape}")
        proxy = img.dataobj
        data = np.asarray(proxy[..., 0] if len(shape) == 4 else proxy[...], dtype=np.float32)
    except UnreadableFile:
        raise
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib errors... all mean "damaged"
        raise UnreadableFile(f"not a readable NIfTI volume: {exc}") from None
    if data.ndim == 2:
        data = data[:, :, None]
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    out = []
    for k in range(data.shape[2]):
        # (x, y) in RAS+ -> rows from anterior to posterior, columns from patient right to left.
        sl = np.ascontiguousarray(data[::-1, ::-1, k].T)
        meta = {
            "channels": 1,
            "format": "NIfTI",
            "slice_index": k,
            "n_slices": int(data.shape[2]),
            "voxel_size": zooms,
            "volumes": int(shape[3]) if len(shape) == 4 else 1,
            "height": int(sl.shape[0]),
            "width": int(sl.shape[1]),
        }
        out.append((sl, meta))
    return out
