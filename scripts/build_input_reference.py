"""Rebuild the learned input check's reference statistics (src/tumorlens/assets/input_reference.npz).

usage: python scripts/build_input_reference.py [--kaggle DIR] [--figshare DIR] [--heldout CSV]
           [--features runs/input_reference/features.npz] [--out src/tumorlens/assets/input_reference.npz]

Features (tumorlens.inputcheck.features: the bundled segmenter's encoder) of the training slices of
both datasets: Kaggle `Training` and the figshare slices of the 188 development patients (never the
45 held-out patients of ../shared/splits/figshare_heldout_patients.csv). A validation part of each
is kept out of the fit: the default model's own validation split of Training (stratified 10 %,
seed 0) and a patient-grouped 20 % of the figshare development patients (seed 0). The detector is
fitted on the rest, and its threshold is set on the validation slices. Kaggle `Testing` is not
read. (Fitting on one randomly acquired copy of each slice as well, training's acquisition
augmentation, was measured and not kept: benchmarks/RESULTS.md, bench_input_check.py compare.)
The features are cached in --features, so benchmarks/bench_input_check.py compare can reuse them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
KAGGLE = SHARED / "data" / "brain-tumor-mri"
FIGSHARE = SHARED / "data" / "figshare-brain-tumor"
HELDOUT = SHARED / "splits" / "figshare_heldout_patients.csv"


def heldout_patients(path: Path) -> set[str]:
    with path.open() as f:
        return {row["pid"] for row in csv.DictReader(f)}


def display256(image: np.ndarray) -> np.ndarray:
    """A raw slice as a [0, 1] 256 px image: where acquisition changes (training's augmentation,
    tumorlens.shifts) act."""
    from tumorlens.data.preprocess import PreprocessRecipe

    return PreprocessRecipe(size=256, clip_low=0.0, clip_high=100.0).display(np.asarray(image, np.float32))


def acquired_copy(image: np.ndarray, acquisition) -> np.ndarray:
    """The slice as another scanner or export might give it (training's acquisition augmentation,
    drawn at random), back on a 0-255 scale."""
    return acquisition(display256(image)) * 255.0


def features_of(ds, desc: str, acquisition=None) -> np.ndarray:
    """Features of every slice of ds, read chunk by chunk; with `acquisition`, of one acquired copy of each."""
    from tumorlens.inputcheck.features import shared_extractor

    extract = shared_extractor()
    rows = []
    for chunk in ds.chunks(64, progress=True, desc=desc):
        images = chunk.images if acquisition is None else [acquired_copy(im, acquisition) for im in chunk.images]
        rows.append((chunk.indices, extract(images)))
    out = np.zeros((len(ds), rows[0][1].shape[1]), np.float32)
    for idx, f in rows:
        out[idx] = f
    return out


def reference_sets(kaggle: Path, figshare: Path, heldout: Path):
    """(Kaggle Training, figshare development slices, fit indices, validation indices) with indices
    into the two sets concatenated (Kaggle first)."""
    import warnings

    from tumorlens.data.sources import open_dataset
    from tumorlens.data.splits import patient_group_split, stratified_split

    kag = open_dataset(kaggle / "Training")
    k_train, k_val = stratified_split(kag, 0.1, seed=0)  # the default model's split (make default-model)
    fig = open_dataset(figshare)
    held = heldout_patients(heldout)
    fig = fig.subset([i for i, s in enumerate(fig.samples) if s.patient_id not in held])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_train, f_val = patient_group_split(fig, 0.2, seed=0)
    n = len(kag)
    return kag, fig, np.concatenate([k_train, n + f_train]), np.concatenate([k_val, n + f_val])


def training_features(kaggle: Path, figshare: Path, heldout: Path) -> dict[str, np.ndarray]:
    """Features, groups (dataset/class) and paths of the fit and validation slices of both datasets."""
    kag, fig, fit, val = reference_sets(kaggle, figshare, heldout)
    x = np.concatenate([features_of(kag, "Kaggle Training"), features_of(fig, "figshare dev")])
    samples = kag.samples + fig.samples
    groups = np.array([f"{'kaggle' if i < len(kag) else 'figshare'}/{s.label}" for i, s in enumerate(samples)])
    return {"fit_x": x[fit], "fit_group": groups[fit], "val_x": x[val], "val_group": groups[val]}


def with_acquired_copies(data: dict, kaggle: Path, figshare: Path, heldout: Path) -> dict:
    """The measured alternative (not shipped): fit and validation sets plus one copy of each slice under
    training's "acquisition_window" augmentation (torch seed 0), for bench_input_check.py compare."""
    import torch

    from tumorlens.data.preprocess import PreprocessRecipe
    from tumorlens.training.acquisition import Acquisition

    kag, fig, fit, val = reference_sets(kaggle, figshare, heldout)
    torch.manual_seed(0)
    acquisition = Acquisition(PreprocessRecipe(size=256, clip_low=0.0, clip_high=100.0), window=True)
    xa = np.concatenate([features_of(kag, "Kaggle Training, acquired copies", acquisition),
                         features_of(fig, "figshare dev, acquired copies", acquisition)])
    return {"fit_x": np.concatenate([data["fit_x"], xa[fit]]), "fit_group": np.concatenate([data["fit_group"]] * 2),
            "val_x": np.concatenate([data["val_x"], xa[val]]), "val_group": np.concatenate([data["val_group"]] * 2)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kaggle", type=Path, default=KAGGLE)
    ap.add_argument("--figshare", type=Path, default=FIGSHARE)
    ap.add_argument("--heldout", type=Path, default=HELDOUT)
    ap.add_argument("--features", type=Path, default=ROOT / "runs" / "input_reference" / "features.npz")
    ap.add_argument("--out", type=Path, default=None, help="default: the package's assets/input_reference.npz")
    ap.add_argument("--reuse-features", action="store_true", help="read --features instead of recomputing them")
    ap.add_argument("--acquired-features", type=Path, default=None,
                    help="also write the features with one acquired copy of each slice here (the alternative "
                    "bench_input_check.py compare measures: runs/input_reference/features_with_acquired.npz)")
    args = ap.parse_args(argv)
    if args.reuse_features and args.features.is_file():
        data = dict(np.load(args.features))
    else:
        data = training_features(args.kaggle, args.figshare, args.heldout)
        args.features.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.features, **data)
        print(f"features: {args.features} ({len(data['fit_x'])} fit, {len(data['val_x'])} validation slices)")
    if args.acquired_features is not None:
        np.savez_compressed(args.acquired_features, **with_acquired_copies(data, args.kaggle, args.figshare, args.heldout))
    from tumorlens.inputcheck.detector import fit_reference, reference_path, save_reference

    out = args.out or reference_path()
    from tumorlens.inputcheck.features import shared_extractor

    ref = fit_reference(data["fit_x"], data["fit_group"], data["val_x"], extractor=shared_extractor().version)
    save_reference(ref, out)
    flagged = ref.score(data["val_x"]) > ref.threshold
    print(f"{out}: {out.stat().st_size / 1024:.0f} KB; threshold {ref.threshold:.3f}; "
          f"{flagged.mean():.2%} of {len(flagged)} validation slices flagged")

if __name__ == "__main__":
    sys.exit(main())
