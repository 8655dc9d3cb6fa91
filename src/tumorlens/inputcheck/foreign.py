"""A labelled set of images that are not brain MRI slices, built from what installed packages ship.

Nothing is stored in the project: the pictures are read at run time from pydicom's test files
(head and spine CT, an abdominal and a limb MR, ultrasound, a nuclear-medicine bone scan),
scikit-image's and matplotlib's sample photographs, and generated noise and phantoms (the project's
synthetic head phantoms, the Shepp-Logan phantom). DICOM pictures are given as grayscale arrays
without their tags, as a PNG export would carry them; CT comes both in its full range and in a
viewing window, as exports do. Kinds whose files are missing on a machine are left out; the
benchmark and the tests say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("head_ct", "spine_ct", "abdominal_mr", "limb_mr", "ultrasound", "bone_scan", "photograph",
         "noise", "phantom")
# what this machine has none of (reported beside the catches)
MISSING_KINDS = ("chest_xray",)

# pydicom test file -> (kind, HU windows (level, width) besides the full range)
_DICOM = {
    "693_J2KI.dcm": ("head_ct", [(40, 80), (400, 2000)]),
    "J2K_pixelrep_mismatch.dcm": ("head_ct", [(40, 80), (400, 2000)]),
    "CT_small.dcm": ("spine_ct", [(40, 400)]),
    "MR_small.dcm": ("limb_mr", []),
    "examples_overlay.dcm": ("abdominal_mr", []),
    "examples_jpeg2k.dcm": ("ultrasound", []),
    "examples_palette.dcm": ("ultrasound", []),
    "examples_rgb_color.dcm": ("ultrasound", []),
    "examples_ybr_color.dcm": ("ultrasound", []),
    "ExplVR_BigEnd.dcm": ("ultrasound", []),
    "JPEG2000.dcm": ("bone_scan", []),
}
_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "coins", "moon", "page", "text", "horse", "rocket",
           "grass", "gravel", "brick", "hubble_deep_field", "retina", "microaneurysms", "cell", "immunohistochemistry",
           "clock", "logo")


@dataclass
class ForeignImage:
    kind: str
    name: str
    image: np.ndarray  # 2-D float32


def _gray(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return a


def _dicom_images() -> list[ForeignImage]:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    out = []
    for name, (kind, windows) in _DICOM.items():
        try:
            ds = pydicom.dcmread(get_testdata_file(name))
            a = ds.pixel_array
        except Exception:  # noqa: BLE001 - a file or decoder this machine lacks: the kind is smaller
            continue
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            a = a[0]
        photometric = str(ds.get("PhotometricInterpretation", ""))
        if photometric == "PALETTE COLOR":  # (pydicom already gives YBR pictures as RGB)
            from pydicom.pixels import apply_color_lut

            a = apply_color_lut(a, ds)
        a = _gray(apply_modality_lut(a, ds) if a.ndim == 2 else a)
        out.append(ForeignImage(kind, name, a))
        for level, width in windows:
            w = np.clip((a - (level - width / 2)) / width, 0, 1) * 255
            out.append(ForeignImage(kind, f"{name} window {level}/{width}", w.astype(np.float32)))
    return out


def _photographs() -> list[ForeignImage]:
    out = []
    try:
        import skimage.data
    except ImportError:
        skimage = None
    if skimage is not None:
        for name in _PHOTOS:
            fn = getattr(skimage.data, name, None)
            try:
                a = fn() if fn is not None else None
            except Exception:  # noqa: BLE001 - an image that needs a download (none here) is skipped
                a = None
            if a is not None and np.asarray(a).ndim in (2, 3):
                out.append(ForeignImage("photograph", f"skimage {name}", _gray(a)))
    try:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            import cv2

            a = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_GRAYSCALE)
        out.append(ForeignImage("photograph", "matplotlib grace_hopper", a.astype(np.float32)))
    except Exception:  # noqa: BLE001 - matplotlib without its sample data
        pass
    return out


def _noise(seed: int = 0) -> list[ForeignImage]:
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    size = 256
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) / 100.0) ** 2 + ((xx - size / 2) / 80.0) ** 2 < 1
    for i in range(3):
        out.append(ForeignImage("noise", f"uniform {i}", rng.uniform(0, 255, (size, size)).astype(np.float32)))
        out.append(ForeignImage("noise", f"gaussian {i}", np.clip(rng.normal(100, 40, (size, size)), 0, 255).astype(np.float32)))
        smooth = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 6)
        out.append(ForeignImage("noise", f"smooth {i}", smooth))
        blob = np.where(disc, rng.uniform(60, 255, (size, size)), rng.uniform(0, 10, (size, size)))
        out.append(ForeignImage("noise", f"noise in a head-shaped disc {i}", blob.astype(np.float32)))
    return out


def _phantoms() -> list[ForeignImage]:
    from tumorlens.data.synthetic import make_phantoms

    out = [ForeignImage("phantom", f"tumorlens synthetic {s.label} {i}", s.image.astype(np.float32))
           for i, s in enumerate(make_phantoms(8, size=256, seed=1).samples)]
    try:
        import skimage.data

        out.append(ForeignImage("phantom", "Shepp-Logan (skimage)", _gray(skimage.data.shepp_logan_phantom())))
    except Exception:  # noqa: BLE001
        pass
    return out


def foreign_images(kinds: tuple[str, ...] = KINDS) -> list[ForeignImage]:
    """Every foreign picture this machine can build, in KINDS order; `kinds` picks some."""
    images = _dicom_images() + _photographs() + _noise() + _phantoms()
    return sorted((f for f in images if f.kind in kinds), key=lambda f: KINDS.index(f.kind))


def brain_mr_from_packages() -> list[ForeignImage]:
    """Brain MR that packages ship but that is not the datasets' kind of slice (a sagittal head MR,
    an EPI slice): not foreign, reported apart, to show what the check does with them."""
    import gzip

    out = []
    try:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("s1045.ima.gz") as f:
            raw = f.read()
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        out.append(ForeignImage("brain_mr_sagittal", "matplotlib s1045", np.frombuffer(raw, "<u2").reshape(256, 256).astype(np.float32)))
    except Exception:  # noqa: BLE001
        pass
    try:
        import nibabel

        path = Path(nibabel.__file__).parent / "tests" / "data" / "example4d.nii.gz"
        v = np.asarray(nibabel.load(path).dataobj, dtype=np.float32)
        out.append(ForeignImage("brain_mr_epi", "nibabel example4d", v[:, :, v.shape[2] // 2, 0]))
    except Exception:  # noqa: BLE001
        pass
    return out
