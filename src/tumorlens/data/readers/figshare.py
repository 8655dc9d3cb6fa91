"""The figshare brain-tumor dataset of J. Cheng, in its two forms.

1. The original MATLAB files (one per slice): a struct `cjdata` with image, label (1 meningioma,
   2 glioma, 3 pituitary), PID (patient id), tumorMask and tumorBorder. The published files are
   MATLAB v7.3 (HDF5, read with h5py); older v5 copies circulate too and are read with scipy.
2. The converted folder: images/N.png, masks/N.png, metadata.csv (index,label,class_name,pid,...);
   its PNGs are read by the raster reader (sources.py opens the rows, lazy.py pairs image and mask).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tumorlens.data.errors import DatasetError, UnreadableFile
from tumorlens.data.readers.base import Header, ImageReader, Slice, Source, check_not_empty, clean_message, is_bytes, open_binary

CHENG_LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}
CONVERTED_COLUMNS = {"index", "class_name"}


# -- original .mat files ---------------------------------------------------------------------------
class ChengMatReader(ImageReader):
    """Header: label, patient id, shapes and border from the struct; image and mask read by get_data."""

    name = "mat"
    suffixes = (".mat",)

    def read(self, source: Source) -> Header:
        check_not_empty(source)
        if _is_hdf5(source):
            handle, fields, version = _open_v73(source), None, "7.3"
            try:
                shape, has_mask, small = _v73_header(handle)
            except BaseException:
                handle.close()
                raise
        else:
            fields, version = _read_v5(source), "5"
            handle = None
            image = fields.get("image")
            shape = np.shape(image) if image is not None else ()
            has_mask = fields.get("tumorMask") is not None
            small = fields
        if len(shape) != 2 or 0 in shape:
            if handle is not None:
                handle.close()
            raise UnreadableFile(f"cjdata.image has shape {tuple(shape)}, expected a 2-D slice")
        code = int(np.asarray(small["label"]).ravel()[0]) if small.get("label") is not None else None
        if code is not None and code not in CHENG_LABELS:
            if handle is not None:
                handle.close()
            raise UnreadableFile(f"cjdata.label is {code}, expected 1 (meningioma), 2 (glioma) or 3 (pituitary)")
        meta = {
            "channels": 1,
            "format": f"MATLAB v{version}",
            "label_code": code,
            "label": CHENG_LABELS.get(code) if code is not None else None,
            "patient_id": small.get("PID"),
            "has_mask": bool(has_mask),
        }
        border = small.get("tumorBorder")
        if border is not None and np.size(border):
            # Stored as [x1, y1, x2, y2, ...] (Cheng's README); kept as (K, 2) pairs, as stored.
            meta["tumor_border"] = np.asarray(border, dtype=np.float32).ravel().reshape(-1, 2)
        return Header(meta["format"], 1, int(shape[0]), int(shape[1]), meta, handle=handle or _Fields(fields))

    def get_data(self, header: Header) -> list[Slice]:
        handle = header.handle
        if isinstance(handle, _Fields):
            image, mask = handle.fields["image"], handle.fields.get("tumorMask")
        else:
            try:
                g = handle["cjdata"]
                # MATLAB writes column-major arrays: h5py sees them transposed, so transpose back.
                image = np.asarray(g["image"]).T
                mask = np.asarray(g["tumorMask"]).T if "tumorMask" in g else None
            except Exception as exc:  # h5py raises OSError/KeyError/TypeError for damaged files
                raise UnreadableFile(f"damaged MATLAB v7.3 file: {clean_message(exc)}") from None
        image = np.asarray(image, dtype=np.float32)
        if mask is not None:
            mask = np.asarray(mask).astype(bool)
            if mask.shape != image.shape:
                raise UnreadableFile(f"cjdata.tumorMask shape {mask.shape} differs from image shape {image.shape}")
        meta = {k: v for k, v in header.meta.items() if k not in ("label", "patient_id", "has_mask")}
        meta["height"], meta["width"] = int(image.shape[0]), int(image.shape[1])
        return [Slice(image, meta, mask)]


class _Fields:
    """A v5 file's fields (scipy reads them all at once), held as a header handle."""

    def __init__(self, fields: dict):
        self.fields = fields

    def close(self) -> None:
        self.fields = {}


def _is_hdf5(source: Source) -> bool:
    import h5py

    if not is_bytes(source):
        try:
            return bool(h5py.is_hdf5(source))
        except OSError as exc:
            raise UnreadableFile(f"cannot open: {exc.strerror or exc}") from None
    data = bytes(source[:2048])
    return any(data[o : o + 8] == b"\x89HDF\r\n\x1a\n" for o in (0, 512, 1024))


def _open_v73(source: Source):
    import h5py

    try:
        return h5py.File(open_binary(source) if is_bytes(source) else source, "r")
    except Exception as exc:
        raise UnreadableFile(f"damaged MATLAB v7.3 file: {clean_message(exc)}") from None


def _v73_header(f) -> tuple[tuple, bool, dict]:
    try:
        if "cjdata" not in f:
            raise UnreadableFile(f"no 'cjdata' struct (found: {', '.join(sorted(f.keys())) or 'nothing'})")
        g = f["cjdata"]
        if "image" not in g:
            raise UnreadableFile("cjdata has no 'image' field")
        shape = tuple(reversed(g["image"].shape))  # transposed on disk (column-major)
        small = {
            "label": np.asarray(g["label"]) if "label" in g else None,
            "tumorBorder": np.asarray(g["tumorBorder"]).ravel() if "tumorBorder" in g else None,
            "PID": _matlab_chars(np.asarray(g["PID"])) if "PID" in g else None,
        }
        return shape, "tumorMask" in g, small
    except UnreadableFile:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/TypeError for damaged files
        raise UnreadableFile(f"damaged MATLAB v7.3 file: {clean_message(exc)}") from None


def _matlab_chars(arr: np.ndarray) -> str | None:
    """MATLAB v7.3 stores a char array as uint16 code units."""
    text = "".join(chr(int(c)) for c in arr.ravel() if int(c) != 0).strip()
    return text or None


def _read_v5(source: Source) -> dict:
    from scipy.io import loadmat

    try:
        data = loadmat(open_binary(source) if is_bytes(source) else str(source), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises ValueError/TypeError/MatReadError for non-MAT data
        raise UnreadableFile(f"not a MATLAB file (neither v7.3/HDF5 nor v5): {clean_message(exc)}") from None
    if "cjdata" not in data:
        keys = sorted(k for k in data if not k.startswith("__"))
        raise UnreadableFile(f"no 'cjdata' struct (found: {', '.join(keys) or 'nothing'})")
    cj = data["cjdata"]
    pid = getattr(cj, "PID", None)
    if isinstance(pid, np.ndarray):
        pid = "".join(map(str, pid.ravel()))
    return {
        "image": getattr(cj, "image", None),
        "label": getattr(cj, "label", None),
        "tumorMask": getattr(cj, "tumorMask", None),
        "tumorBorder": getattr(cj, "tumorBorder", None),
        "PID": (str(pid).strip() or None) if pid is not None else None,
    }


MAT_READER = ChengMatReader()


# -- converted folder ------------------------------------------------------------------------------
def is_converted_folder(root: Path) -> bool:
    return (root / "metadata.csv").is_file() and (root / "images").is_dir()


def read_converted_rows(root: Path) -> list[dict]:
    """Rows of metadata.csv, checked for the columns we need."""
    meta_path = root / "metadata.csv"
    with open(meta_path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = CONVERTED_COLUMNS - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(
                f"{meta_path}: missing column(s) {sorted(missing)}; expected index,label,class_name,pid,original_size"
            )
        return list(reader)
