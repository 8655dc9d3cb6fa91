"""Issue 27: an audit's accuracy on the figshare slices it audited, on all of them and on those
without a near twin in Kaggle Training (which holds figshare's slices re-encoded, so a model trained
on Kaggle Training has seen a near copy of about half of them).

    python benchmarks/figshare_twin_free.py runs/i27/audit_fs_D2 [AUDIT_DIR ...] [--data runs/figshare_dev] [--errors]

--errors also counts each audit's errors without a near twin by kind (truth -> prediction).

Near twin: the data check's perceptual hash within its Hamming threshold (tumorlens.data.checks).
Reads each audit's gradcam_analysis.csv (path, truth, prediction); the audits should cover the same
slices (the Makefile's figshare audit: `--limit 300`, seeded), which is checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from tumorlens.data.checks import DEFAULT_HAMMING, hash_samples, nearest_distance
    from tumorlens.data.sources import open_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("audits", nargs="+", type=Path)
    ap.add_argument("--data", default="runs/figshare_dev", help="the dataset the audits read (scripts/figshare_split.py)")
    ap.add_argument("--errors", action="store_true", help="count the errors without a near twin by truth -> prediction")
    ap.add_argument("--kaggle", default=str(ROOT.parent / "shared/data/brain-tumor-mri"))
    args = ap.parse_args()

    tables = {a: pd.read_csv(a / "gradcam_analysis.csv") for a in args.audits}
    paths = list(next(iter(tables.values()))["path"])
    if any(list(t["path"]) != paths for t in tables.values()):
        sys.exit("the audits did not audit the same slices")
    kaggle = open_dataset(args.kaggle).by_split("Training")
    train_hashes, train_ok = hash_samples(kaggle.samples)
    by_path = {str(s.path): s for s in open_dataset(args.data).samples}
    audited = [by_path[p] for p in paths]
    hashes, ok = hash_samples(audited)
    twin = np.zeros(len(paths), bool)
    twin[ok] = nearest_distance(hashes[ok], train_hashes[train_ok]) <= DEFAULT_HAMMING
    print(f"{len(paths)} audited slices, {int(twin.sum())} with a near twin in Kaggle Training "
          f"(Hamming <= {DEFAULT_HAMMING}), {int((~twin).sum())} without\n")
    print("| audit | accuracy, all | accuracy, without a near twin | errors without a near twin |")
    print("|---|---:|---:|---:|")
    for a, t in tables.items():
        right = (t["truth"] == t["prediction"]).to_numpy()
        print(f"| {a} | {right.mean():.4f} | {right[~twin].mean():.4f} | {int((~right[~twin]).sum())} |")
    if args.errors:
        print()
        for a, t in tables.items():
            wrong = t[(t["truth"] != t["prediction"]).to_numpy() & ~twin]
            kinds = (wrong["truth"] + " -> " + wrong["prediction"]).value_counts()
            print(f"{a}: " + (", ".join(f"{k} {n}" for k, n in kinds.items()) or "no errors"))


if __name__ == "__main__":
    main()
