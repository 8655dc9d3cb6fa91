"""Issue 27, lever 1: how leaky was the validation split every recipe so far was chosen on, and
what do the old default and E2 score on the validation slices without a near twin in training?

    python benchmarks/honest_split.py --model old=/work/teacher_k224.pt --model E2=src/tumorlens/assets/default_model.pt

The Kaggle Training folder has no patient ids, so the trainer split it by slice (stratified,
--val-fraction 0.1 --split-seed 0, the split of both models). The trainer now groups near twins
(the data check's perceptual hashes and threshold, connected components) and splits by group.
For each split: validation slices with a near twin in its training side (at the data check's
threshold, and at 4 and 6 bits), groups and their sizes. For each model: accuracy and macro-F1 on
the old validation split, on its slices without and with a near twin in that training side, on the
new validation split (which a model of the old split partly trained on), and on the slices in both
validation splits without a near twin in the old training side (unseen by the models of either
split). Writes benchmarks/out/honest_split.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def twin_counts(hashes, valid, train, val) -> dict:
    from tumorlens.data.checks import nearest_distance

    tr, va = train[valid[train]], val[valid[val]]
    nearest = nearest_distance(hashes[va], hashes[tr])
    return {f"<= {t}": int((nearest <= t).sum()) for t in (2, 4, 6)}


def scores(model, samples, idx) -> dict:
    from tumorlens.evaluation.metrics import classification_metrics

    sub = samples.subset(idx)
    probs = np.concatenate([model.predict_images(c.images) for c in sub.chunks(64, progress=True, desc="predicting")])
    truth = np.array([model.classes.index(s.label) for s in sub.samples])
    m = classification_metrics(truth, probs, model.classes)
    return {"n": len(idx), "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}


def main() -> None:
    from tumorlens.data.checks import DEFAULT_HAMMING, hash_samples, nearest_distance
    from tumorlens.data.sources import open_dataset
    from tumorlens.data.splits import near_duplicate_groups, stratified_split, train_val_split
    from tumorlens.models import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/brain-tumor-mri"))
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH, a model trained on the old split")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    samples = open_dataset(args.data).by_split("Training")
    hashes, valid = hash_samples(samples.samples)
    groups = near_duplicate_groups(hashes, valid, DEFAULT_HAMMING)
    sizes = np.bincount(groups)
    old_tr, old_va = stratified_split(samples, args.val_fraction, args.seed)
    new_tr, new_va, how = train_val_split(samples, args.val_fraction, args.seed, hashes, valid, DEFAULT_HAMMING)
    out = {
        "n": len(samples), "threshold": DEFAULT_HAMMING,
        "groups": {"count": int(len(sizes)), "singletons": int((sizes == 1).sum()), "largest": int(sizes.max()),
                   "slices_in_groups_of_2_or_more": int(sizes[sizes > 1].sum())},
        "old split (stratified by slice)": {"val": len(old_va), "val_with_twin_in_train": twin_counts(hashes, valid, old_tr, old_va)},
        f"new split ({how})": {"val": len(new_va), "val_with_twin_in_train": twin_counts(hashes, valid, new_tr, new_va)},
    }
    near = np.full(len(old_va), False)
    ok = valid[old_va]
    near[ok] = nearest_distance(hashes[old_va[ok]], hashes[old_tr[valid[old_tr]]]) <= DEFAULT_HAMMING
    # slices no model of either split has seen, nor a near twin of: in both validation splits and
    # without a near twin in the old split's training side (the new split's has none by construction)
    common = np.intersect1d(old_va[~near], new_va)
    out["common unseen validation slices"] = len(common)
    sets = {"old val": old_va, "old val, no near twin in train": old_va[~near],
            "old val, with a near twin in train": old_va[near], "new val": new_va, "common unseen": common}
    for spec in args.model:
        name, path = spec.split("=", 1)
        model = load_model(path)
        out[name] = {"split_method": model.provenance.get("split_method"),
                     **{what: scores(model, samples, idx) for what, idx in sets.items()}}
    dest = ROOT / "benchmarks" / "out" / "honest_split.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
