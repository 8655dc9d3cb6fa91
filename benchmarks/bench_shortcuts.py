"""Planted shortcut on the real Kaggle slices: does the audit find a cue it was not told about?

A small bright square (tumorlens.audit.planted.Marker: top-left corner, outside the head) is put on
every Training meningioma slice and an EfficientNet-Lite0 (ImageNet) is trained on that. It is then
audited on two Testing variants: the marker on every slice ("marker_all": the cue says meningioma
everywhere) and the marker on the meningioma slices only ("marker_class": the cue agrees with the
truth). Both audits must fail the shortcut and attention checks, a flagged strategy cluster must
hold the marker class, and the atlas must show the spot. The default (clean) model is audited on the
same variants beside it.

    .venv/bin/python benchmarks/bench_shortcuts.py train --size 112 --epochs 1 --per-class 600
    .venv/bin/python benchmarks/bench_shortcuts.py audit                          # writes RESULTS.md

Training is a benchmark-only recipe, not a model anyone should use: augmentation off (a flip would
move the marker to the other corner), the default model's clip 0-100 % and no class weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from results import KAGGLE  # noqa: E402
OUT = ROOT / "benchmarks" / "out" / "shortcuts"
MARKED_CLASS = "meningioma"


def load_kaggle():
    from tumorlens.data.sources import open_dataset

    return open_dataset(str(KAGGLE))


def cmd_train(args) -> None:
    import torch

    from tumorlens.audit.planted import mark_samples
    from tumorlens.training.trainer import TrainConfig, train

    torch.set_num_threads(args.threads)
    import numpy as np

    samples = load_kaggle().by_split("Training")
    if args.per_class:  # a seeded class-balanced subset: the shared 2 cores cannot fit a full epoch in time
        rng = np.random.default_rng(0)
        labels = np.array(samples.labels())
        idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: args.per_class]
                                      for c in samples.classes]))
        samples = samples.subset(idx)
    marked = mark_samples(samples, which=MARKED_CLASS)
    n_marked = sum(bool(s.meta.get("planted_marker")) for s in marked.samples)
    print(f"Training: {len(marked)} slices, marker on {n_marked} {MARKED_CLASS} slices", flush=True)
    out = Path(args.out)
    cfg = TrainConfig(data=str(KAGGLE), out=str(out), model="efficientnet_lite0", pretrained="imagenet",
                      size=args.size, clip_low=0.0, clip_high=100.0, split="Training", val_fraction=0.1,
                      epochs=args.epochs, patience=99, batch_size=32, lr=1e-3, class_weights=False,
                      label_smoothing=0.0, augment="none", seed=0, split_seed=0)
    t0 = time.time()
    res = train(cfg, samples=marked)
    info = {"checkpoint": str(res.checkpoint), "minutes": round((time.time() - t0) / 60, 1),
            "validation_accuracy": res.metrics["accuracy"], "validation_macro_f1": res.metrics["macro_f1"],
            "size": args.size, "epochs": args.epochs, "marked_class": MARKED_CLASS, "n_marked": n_marked,
            "threads": args.threads, "n_training_slices": len(marked), "per_class": args.per_class}
    (out / "planted.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the planted-shortcut Lite0 on marked Kaggle Training slices")
    t.add_argument("--size", type=int, default=160)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--per-class", type=int, default=0, help="train on this many Training slices per class (0: all)")
    t.add_argument("--out", default=str(OUT / "planted_model"))
    args = p.parse_args()
    {"train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    main()
