"""What do test-time flips and an ensemble add to the figshare CV? Re-tests the fold models that
`bench_training.py figshare` left in benchmarks/out/figshare-fold{K}{TAG}, one or more TAGs, on each
fold's test patients:
- each CV alone, from its calibrated probabilities, and with left-right flip averaging;
- all given CVs together: per fold, the mean of every model's calibrated probabilities of the slice
  and of its mirror (calibrated, so that models with different logit scales weigh the same);
- slice accuracy, and patient accuracy (a patient's class = argmax of the mean over the patient's slices).
Writes its section of RESULTS.md; the ensemble is an analysis of finished folds, not a product setting.

usage: .venv/bin/python benchmarks/experiments/figshare_ensemble.py --tags _s224,_mri12,_lite2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/results.py
from results import FIGSHARE, write_section  # noqa: E402
from tumorlens.data.sources import open_dataset
from tumorlens.data.splits import patient_kfold
from tumorlens.evaluation.inference import truth_indices
from tumorlens.models import load_model

ROOT = Path(__file__).resolve().parents[1]  # benchmarks/
DATA = FIGSHARE


def fold_probabilities(model_path: Path, test) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, probabilities, probabilities of the mirrored slices), calibrated by the model's temperature.
    Kept beside the model (test/flip_probabilities.npz), so a re-run only computes new folds."""
    cache = model_path.parent / "test" / "flip_probabilities.npz"
    if cache.exists() and cache.stat().st_mtime > model_path.stat().st_mtime:
        saved = np.load(cache)
        return saved["truth"], saved["plain"], saved["mirrored"]
    model = load_model(model_path)
    assert list(model.classes) == list(test.classes), (model.classes, test.classes)  # the class order of the tables
    x = model.prepare([s.image for s in test.samples])
    truth, plain, mirrored = truth_indices(model, test), model.probabilities(x), model.probabilities(torch.flip(x, dims=[3]))
    cache.parent.mkdir(exist_ok=True)
    np.savez(cache, truth=truth, plain=plain, mirrored=mirrored)
    return truth, plain, mirrored


def accuracies(probs: np.ndarray, truth: np.ndarray, patients: np.ndarray) -> tuple[float, float]:
    """(slice accuracy, patient accuracy)."""
    slice_acc = float((probs.argmax(1) == truth).mean())
    hits = [probs[patients == p].mean(0).argmax() == truth[patients == p][0] for p in np.unique(patients)]
    return slice_acc, float(np.mean(hits))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tags", default="_mri12", help="comma-separated suffixes of finished CVs' fold folders")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    tags = args.tags.split(",")
    samples = open_dataset(DATA)
    rows: dict[str, list[tuple[float, float]]] = {}
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # (truth, prediction) of every fold

    def add(name, probs, truth, patients):
        rows.setdefault(name, []).append(accuracies(probs, truth, patients))
        pooled.setdefault(name, []).append((truth, probs.argmax(1)))

    for k, (_, test_idx) in enumerate(patient_kfold(samples, k=args.folds, seed=0)):  # the CV's own folds
        test = samples.subset(test_idx)
        patients = np.array([s.patient_id for s in test.samples])
        together = []
        for tag in tags:
            truth, plain, mirrored = fold_probabilities(ROOT / "out" / f"figshare-fold{k}{tag}" / "model.pt", test)
            add(tag, plain, truth, patients)
            add(f"{tag} + flips", (plain + mirrored) / 2, truth, patients)
            together += [plain, mirrored]
        if len(tags) > 1:
            add("all together + flips", np.mean(together, 0), truth, patients)
        print(f"fold {k}: " + ", ".join(f"{name} {r[-1][0]:.4f}" for name, r in rows.items()), flush=True)

    def table(which: int) -> list[str]:
        lines = ["| models | " + " | ".join(f"fold {k}" for k in range(args.folds)) + " | mean |",
                 "|---|" + "---:|" * (args.folds + 1)]
        for name, r in rows.items():
            values = [v[which] for v in r]
            lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + f" | **{np.mean(values):.4f}** |")
        return lines

    def recall_table() -> list[str]:
        classes = samples.classes
        lines = ["| models | " + " | ".join(f"{c} recall" for c in classes) + " |", "|---|" + "---:|" * len(classes)]
        for name, pairs in pooled.items():
            truth, pred = np.concatenate([t for t, _ in pairs]), np.concatenate([p for _, p in pairs])
            lines.append(f"| {name} | " + " | ".join(f"{(pred[truth == i] == i).mean():.3f}" for i in range(len(classes))) + " |")
        return lines

    text = "\n".join(
        [f"Command: `.venv/bin/python benchmarks/experiments/figshare_ensemble.py --tags {args.tags}` ({time.strftime('%Y-%m-%d')}).",
         "Fold models of the CVs in benchmarks/out/figshare-fold{K}{TAG}; probabilities temperature-calibrated;",
         "'+ flips': mean with the left-right mirrored slice; 'all together': mean over every model and mirror.",
         "", "Slice accuracy:", "", *table(0), "",
         "Patient accuracy (argmax of the mean probabilities over a patient's slices):", "", *table(1), "",
         "Recall per class, slices of all folds pooled:", "", *recall_table()]
    )
    write_section("figshare_ensemble.py", text)
    print(text)


if __name__ == "__main__":
    main()
