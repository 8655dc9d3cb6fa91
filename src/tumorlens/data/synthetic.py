"""Head-like phantoms with exact region masks: the ground truth the audit is validated against.

Each phantom is an axial "slice": dark background, a skull ring (a bright scalp layer outside a
dark bone layer), a textured brain with two dark ventricles, and for tumor classes one tumor
whose shape, intensity and position depend on the class:
- glioma: an irregular, ring-enhancing mass (bright rim, dark necrotic core) inside a hemisphere;
- meningioma: a round, homogeneous, very bright mass against the inner skull (extra-axial);
- pituitary: a small, bright, round mass on the midline below the centre (sellar region);
- notumor (also "no_tumor", "normal", "healthy"): no tumor; its mask is all False.
Unknown class names take the tumor types above in turn.

Head size, position, tilt, skull thickness, tissue texture and noise vary, so a model has to
learn the tumor, not a template. Everything is drawn from numpy generators seeded by
(seed, slice index): the same arguments give the same pixels.

An optional class-correlated shortcut is planted strictly outside the brain:
- "marker": a bright square in a class-specific corner of the background;
- "border": a frame along the image edge whose grey level encodes the class;
- "intensity": the bone layer of the skull gets a class-specific grey level.
Grey levels of "border" and "intensity" stay between background and brain on purpose: the
preprocessing clips to the 1st-99th percentiles and min-max scales, so a shortcut set darker than
the background or brighter than the tumor would be normalised away (or would leak into the
brain's scaled intensities), and the test would measure the normaliser instead of the model.
meta["shortcut_mask"] marks exactly the pixels the shortcut changed.
"""

from __future__ import annotations

import cv2
import numpy as np

from tumorlens.data.sample import Sample, SampleSet

SHORTCUTS = (None, "marker", "border", "intensity")
NO_TUMOR_NAMES = {"notumor", "no_tumor", "no tumor", "normal", "healthy", "none"}
TUMOR_TYPES = ("glioma", "meningioma", "pituitary")

# Tissue grey levels (before noise), on a 0-1 scale.
BACKGROUND = 0.02
SCALP = 0.72
BONE = 0.18
BRAIN = 0.48
VENTRICLE = 0.22


def make_phantoms(
    n: int,
    classes=("glioma", "meningioma", "notumor", "pituitary"),
    size: int = 128,
    seed: int = 0,
    shortcut: str | None = None,
    *,
    shortcut_prob: float = 1.0,
    slices_per_patient: int = 1,
    noise: float = 0.02,
) -> SampleSet:
    """n phantoms, classes in turn (slice i has class i mod len(classes)).

    shortcut_prob: share of slices whose shortcut encodes their own class; the rest encode a
    different class drawn at random (a partly reliable shortcut).
    slices_per_patient: consecutive slices of one class share a patient id and head geometry
    (neighbouring slices of one scan), for testing patient-grouped splits.
    """
    classes = [str(c) for c in classes]
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not classes:
        raise ValueError("need at least one class")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {SHORTCUTS}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if not 0.0 <= shortcut_prob <= 1.0:
        raise ValueError(f"shortcut_prob must lie in [0, 1], got {shortcut_prob}")
    if slices_per_patient < 1:
        raise ValueError(f"slices_per_patient must be at least 1, got {slices_per_patient}")

    tumor_of = _tumor_types(classes)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    samples = []
    for i in range(n):
        # Patients: runs of slices_per_patient slices of one class.
        patient = i // (slices_per_patient * len(classes)) * len(classes) + i % len(classes)
        slice_in_patient = (i // len(classes)) % slices_per_patient
        ci = i % len(classes)
        label = classes[ci]
        geo = _head_geometry(np.random.default_rng([seed, 1, patient]), size)
        rng = np.random.default_rng([seed, 2, i])
        image, regions = _draw_head(rng, geo, yy, xx, size)
        tumor = np.zeros((size, size), bool)
        kind = tumor_of[label]
        if kind is not None:
            tumor = _draw_tumor(image, kind, np.random.default_rng([seed, 3, patient]), rng, geo, regions, yy, xx,
                                slice_in_patient)
        meta = {
            "brain_mask": regions["brain"],
            "skull_mask": regions["skull"],
            "head_mask": regions["head"],
            "background_mask": ~regions["head"],
            "tumor_type": kind,
            "shortcut": shortcut,
            "shortcut_mask": None,
            "shortcut_class": None,
            "channels": 1,
            "synthetic": True,
        }
        if shortcut is not None:
            encoded = ci
            # Its own generator, so that the anatomy and noise are the same with and without a shortcut.
            sc_rng = np.random.default_rng([seed, 4, i])
            if len(classes) > 1 and sc_rng.random() >= shortcut_prob:
                encoded = int(sc_rng.choice([c for c in range(len(classes)) if c != ci]))
            meta["shortcut_mask"] = _plant_shortcut(image, shortcut, encoded, len(classes), regions, size)
            meta["shortcut_class"] = classes[encoded]
        image += rng.normal(0.0, noise, image.shape).astype(np.float32)
        np.clip(image, 0.0, None, out=image)
        samples.append(
            Sample(
                image=image,
                label=label,
                mask=tumor,
                patient_id=f"phantom-p{patient:04d}",
                path=f"synthetic/{label}/phantom_{i:05d}.png",
                meta=meta,
            )
        )
    return SampleSet(samples=samples, classes=sorted(set(classes)), root="synthetic", kind="synthetic")


def _tumor_types(classes: list[str]) -> dict[str, str | None]:
    out, spare = {}, 0
    for c in classes:
        key = c.lower()
        if key in NO_TUMOR_NAMES:
            out[c] = None
        elif key in TUMOR_TYPES:
            out[c] = key
        else:
            out[c] = TUMOR_TYPES[spare % len(TUMOR_TYPES)]
            spare += 1
    return out


def _head_geometry(rng: np.random.Generator, size: int) -> dict:
    a = size * rng.uniform(0.34, 0.40)  # vertical semi-axis (head is longer front to back)
    b = a * rng.uniform(0.78, 0.9)
    return {
        "cy": size / 2 + rng.uniform(-0.04, 0.04) * size,
        "cx": size / 2 + rng.uniform(-0.04, 0.04) * size,
        "a": a,
        "b": b,
        "angle": rng.uniform(-0.2, 0.2),  # radians of tilt
        "skull": size * rng.uniform(0.035, 0.055),
    }


def _ellipse_radius(geo, yy, xx, shrink: float = 0.0) -> np.ndarray:
    """Normalised radius (1 on the ellipse) of the head ellipse shrunk by `shrink` pixels."""
    c, s = np.cos(geo["angle"]), np.sin(geo["angle"])
    dy, dx = yy - geo["cy"], xx - geo["cx"]
    v = c * dy - s * dx
    u = s * dy + c * dx
    return np.sqrt((v / (geo["a"] - shrink)) ** 2 + (u / (geo["b"] - shrink)) ** 2)


def _to_image(geo, v: float, u: float) -> tuple[float, float]:
    """Head coordinates (v along the long axis, u across, in pixels) -> image (y, x)."""
    c, s = np.cos(geo["angle"]), np.sin(geo["angle"])
    return geo["cy"] + c * v + s * u, geo["cx"] - s * v + c * u


def _smooth_noise(rng, size: int, scale: float) -> np.ndarray:
    field = rng.normal(0, 1, (size, size)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=scale)
    return field / (field.std() + 1e-6)


def _draw_head(rng, geo, yy, xx, size):
    t = geo["skull"]
    head = _ellipse_radius(geo, yy, xx) <= 1.0
    below_scalp = _ellipse_radius(geo, yy, xx, shrink=t * 0.45) <= 1.0
    brain = _ellipse_radius(geo, yy, xx, shrink=t) <= 1.0
    image = np.full((size, size), BACKGROUND, np.float32)
    image[head] = SCALP * rng.uniform(0.92, 1.08)
    bone = below_scalp & ~brain
    image[bone] = BONE * rng.uniform(0.85, 1.15)
    texture = _smooth_noise(rng, size, scale=size / 40) * 0.035 + _smooth_noise(rng, size, scale=size / 12) * 0.03
    image[brain] = (BRAIN * rng.uniform(0.92, 1.08) + texture)[brain]
    # Ventricles: two dark crescents either side of the midline, as on an axial slice.
    bv, bu = geo["a"] - t, geo["b"] - t
    for side in (-1, 1):
        cy, cx = _to_image(geo, -0.05 * bv, side * 0.13 * bu)
        r = _ellipse_radius({"cy": cy, "cx": cx, "a": 0.2 * bv, "b": 0.06 * bu, "angle": geo["angle"] + side * 0.25},
                            yy, xx)
        image[(r <= 1.0) & brain] = VENTRICLE * rng.uniform(0.9, 1.1)
    return image, {"head": head, "brain": brain, "skull": head & ~brain, "bone": bone}


def _draw_tumor(image, kind, patient_rng, rng, geo, regions, yy, xx, slice_in_patient) -> np.ndarray:
    """Paint the tumor into image; return its exact mask (always inside the brain)."""
    bv, bu = geo["a"] - geo["skull"], geo["b"] - geo["skull"]
    brain_r = min(bv, bu)
    grow = 1.0 + 0.06 * slice_in_patient * (-1) ** slice_in_patient  # neighbouring slices differ a little
    if kind == "glioma":
        side = patient_rng.choice([-1, 1])
        cy, cx = _to_image(geo, patient_rng.uniform(-0.45, 0.35) * bv, side * patient_rng.uniform(0.3, 0.5) * bu)
        radius = brain_r * patient_rng.uniform(0.17, 0.26) * grow
        # Irregular outline: a radius that wobbles with angle (a few random harmonics).
        theta = np.arctan2(yy - cy, xx - cx)
        wobble = sum(patient_rng.uniform(0.06, 0.14) * np.sin(k * theta + patient_rng.uniform(0, 2 * np.pi))
                     for k in (2, 3, 5))
        dist = np.hypot(yy - cy, xx - cx) / (radius * (1.0 + wobble))
        mask = (dist <= 1.0) & regions["brain"]
        rim = np.clip((dist - 0.45) / 0.35, 0.0, 1.0)  # 0 in the necrotic core, 1 at the enhancing rim
        values = 0.30 + 0.55 * rim + rng.normal(0, 0.04, image.shape)
    elif kind == "meningioma":
        angle = patient_rng.uniform(-np.pi * 0.9, -np.pi * 0.1)  # upper half of the head, against the skull
        radius = brain_r * patient_rng.uniform(0.14, 0.2) * grow
        reach = 1.0 - 0.7 * radius / brain_r
        cy, cx = _to_image(geo, np.sin(angle) * bv * reach, np.cos(angle) * bu * reach)
        dist = np.hypot(yy - cy, xx - cx) / radius
        mask = (dist <= 1.0) & regions["brain"]
        values = np.full(image.shape, 0.95 * rng.uniform(0.95, 1.05), np.float32)
    elif kind == "pituitary":
        cy, cx = _to_image(geo, patient_rng.uniform(0.28, 0.4) * bv, patient_rng.uniform(-0.05, 0.05) * bu)
        radius = brain_r * patient_rng.uniform(0.09, 0.13) * grow
        dist = np.hypot((yy - cy) / 0.85, xx - cx) / radius
        mask = (dist <= 1.0) & regions["brain"]
        values = np.full(image.shape, 0.88 * rng.uniform(0.95, 1.05), np.float32)
    else:  # pragma: no cover - _tumor_types only yields the kinds above
        raise ValueError(kind)
    image[mask] = values[mask].astype(np.float32)
    return mask


def _plant_shortcut(image, kind, encoded: int, n_classes: int, regions, size: int) -> np.ndarray:
    """Write a class-encoding signal outside the brain; return the exact pixels changed."""
    shortcut = np.zeros((size, size), bool)
    if kind == "marker":
        m = max(3, size // 20)
        off = max(1, size // 40)
        corner = encoded % 4
        # More than four classes: same corner, bigger square (still outside the head).
        m = m + 2 * (encoded // 4)
        top = off if corner in (0, 1) else size - off - m
        left = off if corner in (0, 2) else size - off - m
        shortcut[top : top + m, left : left + m] = True
        shortcut &= ~regions["head"]
        image[shortcut] = 1.0
    elif kind == "border":
        w = max(2, size // 48)
        shortcut[:w, :] = shortcut[-w:, :] = shortcut[:, :w] = shortcut[:, -w:] = True
        shortcut &= ~regions["head"]
        image[shortcut] = _level(encoded, n_classes)
    elif kind == "intensity":
        shortcut = regions["bone"].copy()
        image[shortcut] = _level(encoded, n_classes)
    return shortcut


def _level(encoded: int, n_classes: int) -> float:
    """A class-specific grey level between the background (0.02) and the brain (~0.48)."""
    return float(0.08 + 0.3 * encoded / max(n_classes - 1, 1))
