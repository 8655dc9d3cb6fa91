"""Would left-right flip test-time augmentation help the figshare CV? Re-tests the fold models that
`bench_training.py figshare` left in benchmarks/out/figshare-fold{K}{TAG}: accuracy on each fold's
test patients from the logits as they are, and from the mean of the logits of the slice and its mirror.
Printed, not written to RESULTS.md (an analysis of finished folds, not a product setting).

usage: .venv/bin/python benchmarks/figshare_tta.py --tag _mri12
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tumorlens.data.sources import open_dataset
from tumorlens.data.splits import patient_kfold
from tumorlens.evaluation.inference import truth_indices
from tumorlens.models import load_model

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parents[1] / "shared" / "data" / "figshare-brain-tumor"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    samples = open_dataset(DATA)
    plain, flipped = [], []
    for k, (_, test_idx) in enumerate(patient_kfold(samples, k=args.folds, seed=0)):  # the CV's own folds
        model = load_model(ROOT / "out" / f"figshare-fold{k}{args.tag}" / "model.pt")
        test = samples.subset(test_idx)
        truth = truth_indices(model, test)
        x = model.prepare([s.image for s in test.samples])
        logits = model.logits(x).numpy()
        mirrored = model.logits(torch.flip(x, dims=[3])).numpy()
        plain.append(float((logits.argmax(1) == truth).mean()))
        flipped.append(float(((logits + mirrored).argmax(1) == truth).mean()))
        print(f"fold {k}: accuracy {plain[-1]:.4f}, with flip averaging {flipped[-1]:.4f}", flush=True)
    print(f"mean: {np.mean(plain):.4f}, with flip averaging {np.mean(flipped):.4f}")


if __name__ == "__main__":
    main()
