"""Issue 30: which cleaning of the slice before the input check's encoder, and which encoder stages,
keep shifted MRI slices in and foreign images out. Validation data only (Kaggle Testing and the
held-out figshare patients are not read).

    .venv/bin/python benchmarks/experiments/input_check_cleaning.py [--variants none,despike4-median3,...]

For each cleaning variant the features of stages 1-4 are computed once (the encoder built with all
four) and every stage subset is scored from the same pass: the detector is fitted on the fit slices
of scripts/build_input_reference.py, its threshold set at the shipped quantile of the validation
slices' scores, then the share of the validation slices' shifted copies flagged (bench_input_check's
300 slices x 14 shifts), the foreign set's AUROC and the share caught. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

STAGE_WIDTHS = (16, 24, 40, 112)  # channels of the segmenter encoder's stages 1-4 (tf_efficientnet_lite0)


def _despike(ratio: float):
    from tumorlens.inputcheck.features import despike

    return partial(despike, ratio=ratio)


def _median(size: int):
    return lambda im: cv2.medianBlur(np.ascontiguousarray(im, np.float32), size)


def _nlm(h: float):
    def clean(im):
        u8 = (np.clip(im, 0, 1) * 255).astype(np.uint8)
        return cv2.fastNlMeansDenoising(u8, None, h, 7, 21).astype(np.float32) / 255
    return clean


def _chain(*steps):
    def clean(im):
        for s in steps:
            im = s(im)
        return im
    return clean


def noise_sigma(im: np.ndarray) -> float:
    """The slice's noise level (scikit-image's wavelet estimate, Donoho's MAD of the finest detail band)."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(im))


def _noise_gated(gate: float):
    """Despike, then a 3 x 3 median unless the slice is noisier than `gate`: then non-local means with
    h scaled to its own noise (h = 12 at the gaussian-noise shift's 0.05), so only noisy slices pay for it."""
    despike, median = _despike(4.0), _median(3)

    def clean(im):
        im = despike(im)
        sigma = noise_sigma(im)
        return _nlm(255 * sigma)(im) if sigma > gate else median(im)
    return clean


GATED = "despike4-median3-nlm-if-noisy"  # built in main: its gate comes from the fit slices' noise levels

VARIANTS = {  # name -> cleaning of the [0, 1] 256 px slice
    "none": lambda im: im,
    "despike6-median3": _chain(_despike(6.0), _median(3)),  # shipped first (session 4), then despike4-median3
    "despike4-median3": _chain(_despike(4.0), _median(3)),
    "despike6-median5": _chain(_despike(6.0), _median(5)),
    "despike6-nlm12": _chain(_despike(6.0), _nlm(12)),
}
SUBSETS = {"1-4": (1, 2, 3, 4), "2-4": (2, 3, 4), "3-4": (3, 4)}


class Extractor:
    """Stages 1-4 pooled, after a given cleaning (the shipped extractor's recipe otherwise)."""

    def __init__(self, clean):
        from tumorlens.assets import ASSETS
        from tumorlens.data.preprocess import PreprocessRecipe
        from tumorlens.inputcheck import features

        encoder, payload = features.load_encoder(ASSETS / "segmenter.pt", stages=(1, 2, 3, 4))
        self.net = features.PooledEncoder(encoder).eval()
        self.recipe = PreprocessRecipe.from_dict(payload["recipe"])
        self.clean = clean

    @torch.inference_mode()
    def __call__(self, images01: list[np.ndarray], desc: str) -> np.ndarray:
        out = []
        for i in tqdm(range(0, len(images01), 64), desc=desc, unit="batch"):
            x = np.stack([self.recipe(self.clean(im))[None] for im in images01[i : i + 64]]).astype(np.float32)
            out.append(self.net(torch.from_numpy(x)).numpy())
        return np.concatenate(out)


def columns(stages) -> np.ndarray:
    edges = np.cumsum((0,) + STAGE_WIDTHS)
    return np.concatenate([np.arange(edges[s - 1], edges[s]) for s in stages])


def main() -> None:
    from bench_input_check import N_SHIFTED, read_images, seeded_subset, shifted_copies
    from build_input_reference import FIGSHARE, HELDOUT, KAGGLE, display256, reference_sets

    from tumorlens.inputcheck.detector import QUANTILE, fit_reference
    from tumorlens.inputcheck.foreign import foreign_images

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join([*VARIANTS, GATED]))
    args = ap.parse_args()

    kag, fig, fit, val = reference_sets(KAGGLE, FIGSHARE, HELDOUT)
    samples = kag.samples + fig.samples
    groups = np.array([f"{'kaggle' if i < len(kag) else 'figshare'}/{s.label}" for i, s in enumerate(samples)])
    images = [display256(im) for im in read_images(type(kag)(samples, []), "slices")]  # fit + validation, 256 px
    # the shifted copies as bench_input_check makes them (8-bit range), back to [0, 1] as the extractor's display gives
    shifted = {n: [display256(im) for im in ims]
               for n, ims in shifted_copies(seeded_subset(read_images(type(kag)([samples[i] for i in val], []),
                                                                      "validation slices"), N_SHIFTED)).items()}
    foreign = foreign_images()
    foreign01 = [display256(f.image) for f in foreign]
    kinds = np.array([f.kind for f in foreign])

    rows = []
    for name in args.variants.split(","):
        t0 = time.perf_counter()
        if name == GATED:
            despike = _despike(4.0)
            sigma_fit = np.array([noise_sigma(despike(images[i])) for i in tqdm(fit, desc="noise of the fit slices")])
            gate = float(np.quantile(sigma_fit, 0.995))
            noisy = {n: np.mean([noise_sigma(despike(im)) > gate for im in ims]) for n, ims in shifted.items()}
            print(f"{GATED}: gate {gate:.4f} (0.995 quantile of the fit slices' noise); shifted copies over it: "
                  + ", ".join(f"{n} {100 * v:.0f} %" for n, v in noisy.items())
                  + f"; foreign over it: {np.mean([noise_sigma(despike(im)) > gate for im in foreign01]):.2f}", flush=True)
            VARIANTS[GATED] = _noise_gated(gate)
        extract = Extractor(VARIANTS[name])
        x = extract(images, f"{name}: slices")
        sx = {n: extract(ims, f"{name}: {n}") for n, ims in shifted.items()}
        fx = extract(foreign01, f"{name}: foreign")
        per_image_ms = 1000 * (time.perf_counter() - t0) / (len(images) + 14 * N_SHIFTED + len(foreign))
        for subset, stages in SUBSETS.items():
            c = columns(stages)
            ref = fit_reference(x[fit][:, c], groups[fit], x[val][:, c])
            v, f = ref.score(x[val][:, c]), ref.score(fx[:, c])
            s = {n: ref.score(a[:, c]) for n, a in sx.items()}
            auc = float((f[:, None] > v[None]).mean() + 0.5 * (f[:, None] == v[None]).mean())
            per = {n: float(np.mean(a > ref.threshold)) for n, a in s.items()}
            worst = sorted(per, key=per.get, reverse=True)[:3]
            by_kind = ", ".join(f"{k} {np.mean(f[kinds == k] > ref.threshold):.2f}" for k in dict.fromkeys(kinds))
            rows.append(f"| {name} | {subset} | {auc:.4f} | {100 * np.mean(list(per.values())):.2f} % | "
                        + ", ".join(f"{n} {100 * per[n]:.0f} %" for n in worst)
                        + f" | {100 * np.mean(f > ref.threshold):.2f} % | {by_kind} | {per_image_ms:.1f} |")
        print(rows[-1], flush=True)
    print(f"\nValidation slices {len(val)}, fit {len(fit)}; threshold: the {QUANTILE} quantile of the validation "
          f"scores; shifted: {N_SHIFTED} validation slices x 14 shifts; foreign: {len(foreign)} images.\n")
    print("| cleaning | stages | AUROC validation vs foreign | shifted flagged | worst shifts | foreign caught | "
          "caught by kind | ms / image (cleaning + features, 2 threads) |")
    print("|---|---|---:|---:|---|---:|---|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
