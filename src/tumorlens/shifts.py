"""A fixed, seeded set of acquisition shifts, and a model's accuracy under each of them.

Library: TorchIO (`torchio`), because it is the library written for exactly these MRI intensity
and k-space transforms: gamma, bias field, noise, anisotropic resampling, affine, and the
ghosting, motion and spike artifacts that come from the k-space physics of MR acquisition
(MONAI has several of them too, but TorchIO has all of them, deterministic classes with explicit
parameters for each, and no extra framework). None of the MRI transforms is written here; this
module only fixes their parameters. JPEG re-encoding is not an MRI transform: Pillow's encoder
does it.

Every shift acts on *display images*: the (N, S, S) float [0, 1] images at model size that
`model.recipe.display(raw)` gives, the step before z-scoring, where all audit perturbations are
made (see `tumorlens.audit.forward`). After the shift the recipe's own percentile clip and
min-max scaling is applied again (`renormalize=True`), as it would be if the shifted image had
arrived as a file. So a global linear brightness or contrast change, which that scaling undoes,
would measure nothing: the contrast and brightness shifts here are intensity *windows* that
saturate part of the range, which the scaling cannot undo (a narrower or shifted display window,
a scanner's or viewer's export). On a clean display image the re-scaling is the identity.

TorchIO works on (C, X, Y, Z) tensors. A batch of N slices is one (1, N, H, W) volume whose first
axis is the slices (or, for the two shifts that must see one slice at a time, N channels of a
(1, H, W) volume): every shift runs once per batch with the same parameters for every slice, and
the k-space of motion (split along the last axis) and ghosting (along axis 1 of the slice, its
rows) lies in the slice's plane. Rotations are about the first axis, i.e. in the slice plane.

The set is fixed: the same images in the same order give the same pixels (random parts, the
bias field's coefficients and the noise, come from generators seeded by `seed` and the batch
position of the batch's first image; batches are TRANSFORM_BATCH images, whatever the model's
batch size).

This module depends on the model checkpoint and preprocessing only, not on the audit, so training
can select recipes with it on validation data.
"""

from __future__ import annotations

import io
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

TRANSFORM_BATCH = 64


@dataclass(frozen=True)
class Shift:
    """One acquisition shift: a name for tables, its parameters, and how to apply it."""

    name: str
    kind: str  # intensity | noise | resolution | compression | geometry | artifact
    params: dict
    library: str
    apply: Callable[[np.ndarray, int], np.ndarray] = field(repr=False, compare=False)

    def __call__(self, images01: np.ndarray, batch_start: int = 0) -> np.ndarray:
        """(N, S, S) display images -> (N, S, S) shifted images (not yet re-normalised).

        batch_start: position of the first image in the whole evaluated set; it seeds the random
        parts (the noise), so that batches differ from one another and a run repeats exactly.
        """
        arr = np.asarray(images01, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        if len(arr) == 0:
            return arr.copy()
        with _one_thread():
            return np.asarray(self.apply(arr, batch_start), dtype=np.float32)


@contextmanager
def _one_thread():
    """Run the shifts' many small per-slice torch ops on one thread.

    Measured on the shared 2-core machine under load: tio.Gamma on 64 slices of 224 px took 2-6 s
    with torch's 2 intra-op threads and 0.06-0.2 s with one (the threads' synchronisation dominates
    ops this small). The model's forward passes keep the caller's thread count.
    """
    import SimpleITK as sitk  # TorchIO's resampling engine, which has its own thread pool

    before, before_itk = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    torch.set_num_threads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before_itk)


# -- TorchIO plumbing -------------------------------------------------------------------------------
def _as_volume(images: np.ndarray, stack: bool = False) -> torch.Tensor:
    """(N, H, W) -> (N, 1, H, W), N channels of a one-voxel-thick volume; or with stack=True
    (1, N, H, W), one volume whose first axis is the slices (see module docstring)."""
    return torch.from_numpy(np.ascontiguousarray(images[None] if stack else images[:, None]))


def _torchio(make: Callable[[int], object], stack: bool = True) -> Callable[[np.ndarray, int], np.ndarray]:
    """Wrap a TorchIO transform factory (batch start -> transform) as a batch function.

    stack=True runs the transform once on the slices stacked along the first axis: TorchIO and
    SimpleITK then make one call per batch instead of one per slice (measured: the per-slice loops
    of Affine, Resample and Motion made the shifts cost more than a third of the model passes).
    Only for transforms that never mix the first axis: in-plane rotation and scaling, in-plane
    resampling and blur, and the k-space artifacts whose edit depends on the in-plane frequency
    only (motion, ghosting); tests check that a batch gives what each slice gives alone.
    Bias field (a 3-D polynomial over the volume) and spike (scaled by the spectrum's maximum) run
    per slice, as channels.
    """

    def run(images: np.ndarray, batch_start: int) -> np.ndarray:
        out = np.asarray(make(batch_start)(_as_volume(images, stack)))
        return out[0] if stack else out[:, 0]

    return run


def _jpeg(quality: int) -> Callable[[np.ndarray, int], np.ndarray]:
    from PIL import Image

    def run(images: np.ndarray, batch_start: int) -> np.ndarray:
        out = np.empty_like(images)
        for i, im in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray((np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            out[i] = np.asarray(Image.open(buf), dtype=np.float32) / 255.0
        return out

    return run


def _resolution(factor: float) -> Callable[[np.ndarray, int], np.ndarray]:
    import torchio as tio

    # Antialiasing before the down-sampling, with the Gaussian width of Cardoso et al. (MICCAI 2015),
    # the one TorchIO's Resample(antialias=True) uses; that option itself cannot run here because its
    # SimpleITK filter needs 4 voxels along every axis, and a slice has one along the first.
    sigma = float(np.sqrt((factor**2 - 1) / (8 * np.log(2))))

    def run(images: np.ndarray, batch_start: int) -> np.ndarray:
        image = tio.ScalarImage(tensor=_as_volume(images, stack=True), affine=np.eye(4))
        shape, affine = image.spatial_shape, image.affine.copy()
        # Down-sample in the slice plane, then back onto the original grid: what RandomAnisotropy
        # does along one axis, here along both in-plane axes.
        smooth = tio.Blur((0.0, sigma, sigma))(image)
        low = tio.Resample((1.0, factor, factor), image_interpolation="linear")(smooth)
        back = tio.Resample((shape, affine), image_interpolation="linear")(low)
        return back.data.numpy()[0]

    return run


def standard_shifts(seed: int = 0) -> tuple[Shift, ...]:
    """The fixed set of shifts the robustness check and training selection use."""
    import torchio as tio

    rng = np.random.default_rng([seed, 15])
    # Bias field: order-3 polynomial (TorchIO's default order), coefficients drawn once and fixed.
    # With the singleton first axis only the in-plane terms vary; the field spans about 0.7-1.4x.
    bias_order = 3
    n_coef = (bias_order + 1) * (bias_order + 2) * (bias_order + 3) // 6
    bias_coefficients = [round(float(c), 4) for c in rng.uniform(-0.25, 0.25, n_coef)]
    motion = {"degrees": [[4.0, 0.0, 0.0], [-3.0, 0.0, 0.0]], "translation": [[0.0, 3.0, -2.0], [0.0, -2.0, 3.0]],
              "times": [0.45, 0.7]}
    spike = {"spikes_positions": [[0.0, 0.53, 0.56]], "intensity": 0.15}

    def window(lo: float, hi: float):
        # Linear map of [lo, hi] onto [0, 1], saturating outside (TorchIO RescaleIntensity + Clamp).
        return lambda b: tio.Compose([tio.RescaleIntensity(out_min_max=(0.0, 1.0), in_min_max=(lo, hi)),
                                      tio.Clamp(0.0, 1.0)])

    T = "torchio"
    return (
        Shift("gamma 0.6", "intensity", {"gamma": 0.6}, T, _torchio(lambda b: tio.Gamma(0.6))),
        Shift("gamma 1.6", "intensity", {"gamma": 1.6}, T, _torchio(lambda b: tio.Gamma(1.6))),
        Shift("contrast up", "intensity", {"window": [0.1, 0.9]}, T, _torchio(window(0.1, 0.9))),
        Shift("brightness up", "intensity", {"window": [-0.2, 0.8]}, T, _torchio(window(-0.2, 0.8))),
        Shift("brightness down", "intensity", {"window": [0.2, 1.2]}, T, _torchio(window(0.2, 1.2))),
        Shift("bias field", "intensity", {"order": bias_order, "coefficients": bias_coefficients}, T,
              _torchio(lambda b: tio.BiasField(bias_coefficients, bias_order), stack=False)),
        Shift("gaussian noise", "noise", {"std": 0.05, "clamp_min": 0.0}, T,
              _torchio(lambda b: tio.Compose([tio.Noise(0.0, 0.05, seed=seed * 100003 + b), tio.Clamp(0.0)]))),
        Shift("resolution x2", "resolution", {"downsample": 2, "antialias": True}, T, _resolution(2.0)),
        Shift("resolution x3", "resolution", {"downsample": 3, "antialias": True}, T, _resolution(3.0)),
        Shift("jpeg 50", "compression", {"quality": 50}, "pillow", _jpeg(50)),
        Shift("rotate 10 scale 0.9", "geometry", {"degrees": 10.0, "scale": 0.9}, T,
              _torchio(lambda b: tio.Affine(scales=(1.0, 0.9, 0.9), degrees=(10.0, 0.0, 0.0),
                                            translation=(0.0, 0.0, 0.0), default_pad_value="minimum"))),
        Shift("ghosting", "artifact", {"num_ghosts": 4, "axis": "rows", "intensity": 0.5, "restore": 0.02}, T,
              _torchio(lambda b: tio.Ghosting(num_ghosts=4, axis=1, intensity=0.5, restore=0.02))),
        Shift("motion", "artifact", motion, T,
              _torchio(lambda b: tio.Motion(np.array(motion["degrees"]), np.array(motion["translation"]),
                                            np.array(motion["times"]), "linear"))),
        Shift("spike", "artifact", spike, T,
              _torchio(lambda b: tio.Spike(np.array(spike["spikes_positions"]), spike["intensity"]), stack=False)),
    )


def shift_by_name(name: str, seed: int = 0) -> Shift:
    shifts = {s.name: s for s in standard_shifts(seed)}
    if name not in shifts:
        raise ValueError(f"unknown shift {name!r}; choose from: {', '.join(shifts)}")
    return shifts[name]


def acquired_images(recipe, raw_images) -> np.ndarray:
    """The images the shifts act on: [0, 1] at model size, before any intensity step of the recipe.

    For every recipe without an intensity step (all min-max recipes) this is `recipe.display`; a
    recipe with one (e.g. robust-model's `intensity="head_rank"`) names it `recipe.acquired`:
    a scanner acts before that step, so the shift must too.
    """
    step = getattr(recipe, "acquired", recipe.display)
    return np.stack([step(im) for im in raw_images]) if len(raw_images) else np.zeros((0, recipe.size, recipe.size),
                                                                                       np.float32)


def renormalize01(recipe, images: np.ndarray) -> np.ndarray:
    """What a shifted image becomes as the model's display image (as if it had arrived as a file).

    The recipe's percentile clip and min-max scaling (`scale01`), followed by its intensity step if
    it has one (`from_acquired`). For a min-max recipe this is the identity on a clean display image.
    """
    step = getattr(recipe, "from_acquired", recipe.scale01)
    return np.stack([step(im) for im in images]) if len(images) else np.asarray(images, np.float32)


# -- metrics ----------------------------------------------------------------------------------------
def shift_metrics(truth: np.ndarray, clean_pred: np.ndarray, pred: np.ndarray, classes: Sequence[str],
                  mask: np.ndarray | None = None) -> dict:
    """Accuracy, macro-F1 and share of changed predictions, overall and per true class."""
    from sklearn.metrics import f1_score

    truth, clean_pred, pred = (np.asarray(a) for a in (truth, clean_pred, pred))
    if mask is not None:
        mask = np.asarray(mask, bool)
        truth, clean_pred, pred = truth[mask], clean_pred[mask], pred[mask]
    n = len(truth)
    if n == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "changed": None, "per_class": {}}
    labels = list(range(len(classes)))
    per_class = {}
    for ci, c in enumerate(classes):
        sel = truth == ci
        if sel.any():
            per_class[c] = {"n": int(sel.sum()), "accuracy": float((pred[sel] == ci).mean()),
                            "changed": float((pred[sel] != clean_pred[sel]).mean())}
    return {
        "n": int(n),
        "accuracy": float((pred == truth).mean()),
        "macro_f1": float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
        "changed": float((pred != clean_pred).mean()),
        "per_class": per_class,
    }


@dataclass
class ShiftEvaluation:
    """Predictions under every shift of a set of images, with the costs of getting them."""

    classes: list[str]
    truth: np.ndarray
    clean_pred: np.ndarray
    shifts: list[Shift]
    preds: dict[str, np.ndarray]  # shift name -> (N,) predicted class indices
    probs: dict[str, np.ndarray]  # shift name -> (N,) probability of the true class
    seconds_total: float = 0.0
    seconds_model: float = 0.0  # time inside the model's forward passes (the passes the stage needs)
    seconds_transforms: float = 0.0
    model_passes: int = 0  # images through the model (all shifts, plus the clean pass if it was made here)
    kept: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # image index -> shift name -> shifted image

    @property
    def cost_ratio(self) -> float | None:
        """Whole stage time / time of the model passes it needs (1.0 = the shifts cost nothing)."""
        return self.seconds_total / self.seconds_model if self.seconds_model > 0 else None

    def clean(self, mask: np.ndarray | None = None) -> dict:
        return shift_metrics(self.truth, self.clean_pred, self.clean_pred, self.classes, mask)

    def metrics(self, mask: np.ndarray | None = None) -> list[dict]:
        """One dict per shift: name, kind, params, library, accuracy, macro_f1, changed, per_class, n."""
        out = []
        for s in self.shifts:
            m = shift_metrics(self.truth, self.clean_pred, self.preds[s.name], self.classes, mask)
            out.append({"name": s.name, "kind": s.kind, "params": s.params, "library": s.library, **m})
        return out

    @classmethod
    def concat(cls, parts: Sequence["ShiftEvaluation"]) -> "ShiftEvaluation":
        """Evaluations of consecutive parts of one set (e.g. the audit's chunks) as one; kept
        indices are shifted to positions in the whole set."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        kept, offset = {}, 0
        for p in parts:
            kept.update({offset + i: v for i, v in p.kept.items()})
            offset += len(p.truth)
        return cls(
            classes=first.classes, shifts=first.shifts,
            truth=np.concatenate([p.truth for p in parts]),
            clean_pred=np.concatenate([p.clean_pred for p in parts]),
            preds={s.name: np.concatenate([p.preds[s.name] for p in parts]) for s in first.shifts},
            probs={s.name: np.concatenate([p.probs[s.name] for p in parts]) for s in first.shifts},
            seconds_total=sum(p.seconds_total for p in parts), seconds_model=sum(p.seconds_model for p in parts),
            seconds_transforms=sum(p.seconds_transforms for p in parts),
            model_passes=sum(p.model_passes for p in parts), kept=kept,
        )


def evaluate_under_shifts(model, display_images: np.ndarray, truth: np.ndarray, shifts: Sequence[Shift] | None = None,
                          *, clean_probs: np.ndarray | None = None, seed: int = 0, batch_size: int = 64,
                          renormalize: bool = True, start: int = 0, keep: Sequence[int] = (),
                          progress: bool = True) -> ShiftEvaluation:
    """Every image through the model under every shift; per-shift metrics via .metrics(mask).

    display_images: (N, S, S) float [0, 1] at model size: `acquired_images(model.recipe, raw)`, which
    is `model.recipe.display(raw)` for every recipe without an intensity step.
    truth: (N,) class indices. clean_probs: (N, C) probabilities of the unshifted images if the
    caller already has them (the audit does); otherwise the clean pass is made here too.
    start: position of these images in a larger set evaluated in parts (seeds the noise; see
    Shift.__call__). keep: indices (into these images) whose shifted versions to keep, for figures.
    Batches of TRANSFORM_BATCH images go through each shift and then the model in one call, so the
    stage costs the model passes plus the (vectorised) shifts; `cost_ratio` measures that.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    shifts = list(standard_shifts(seed) if shifts is None else shifts)
    images = np.asarray(display_images, np.float32)
    truth = np.asarray(truth, np.int64)
    if images.ndim != 3:
        raise ValueError(f"expected (N, S, S) display images, got shape {images.shape}")
    if len(truth) != len(images):
        raise ValueError(f"{len(images)} images but {len(truth)} labels")
    n = len(images)
    keep = {int(i) for i in keep if 0 <= int(i) < n}
    seconds_model = 0.0
    passes = 0

    def forward(batch: np.ndarray) -> np.ndarray:
        nonlocal seconds_model, passes
        t = time.perf_counter()
        p = _probabilities(model, batch, batch_size)
        seconds_model += time.perf_counter() - t
        passes += len(batch)
        return p

    def prepare(batch: np.ndarray) -> np.ndarray:
        return renormalize01(model.recipe, batch) if renormalize else batch

    if clean_probs is None:
        clean_probs = np.concatenate([forward(prepare(images[i:i + TRANSFORM_BATCH]))
                                      for i in range(0, n, TRANSFORM_BATCH)]) \
            if n else np.zeros((0, model.num_classes), np.float32)
    clean_pred = np.asarray(clean_probs).argmax(1)
    preds = {s.name: np.empty(n, np.int64) for s in shifts}
    p_true = {s.name: np.empty(n, np.float32) for s in shifts}
    kept: dict[int, dict[str, np.ndarray]] = {i: {} for i in sorted(keep)}
    bar = tqdm(total=n * len(shifts), desc="acquisition shifts", unit="img", disable=not progress)
    for lo in range(0, n, TRANSFORM_BATCH):
        chunk = images[lo:lo + TRANSFORM_BATCH]
        hi = lo + len(chunk)
        for s in shifts:
            shifted = prepare(s(chunk, start + lo))
            p = forward(shifted)
            preds[s.name][lo:hi] = p.argmax(1)
            p_true[s.name][lo:hi] = p[np.arange(len(chunk)), truth[lo:hi]]
            for i in keep & set(range(lo, hi)):
                kept[i][s.name] = shifted[i - lo].copy()
            bar.update(len(chunk))
    bar.close()
    total = time.perf_counter() - t_start
    return ShiftEvaluation(classes=list(model.classes), truth=truth, clean_pred=clean_pred, shifts=shifts,
                           preds=preds, probs=p_true, seconds_total=total, seconds_model=seconds_model,
                           seconds_transforms=total - seconds_model, model_passes=passes, kept=kept)


def _probabilities(model, images01: np.ndarray, batch_size: int) -> np.ndarray:
    # recipe.normalize then the model, as tumorlens.audit.forward.probabilities01 does (kept here so
    # training can use this module without importing the audit).
    x = torch.from_numpy(model.recipe.normalize(images01)[:, None].copy())
    return model.probabilities(x, batch_size=batch_size)
