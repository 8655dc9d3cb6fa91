"""Training benchmarks on the real data (long: run in the background with nohup).

  compare  : train each architecture on Kaggle Training (validation held out), evaluate on
             Testing; accuracy, macro-F1 (all and leakage-free) and training time per model.
  figshare : 5-fold cross-validation on the figshare set, folds grouped by patient.

usage: .venv/bin/python benchmarks/bench_training.py compare [--epochs N] [--size S] [--models a,b]
       .venv/bin/python benchmarks/bench_training.py figshare [--epochs N] [--size S] [--folds K]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from results import write_section
from tumorlens.data.sources import open_dataset
from tumorlens.data.splits import patient_kfold
from tumorlens.evaluation.evaluate import evaluate
from tumorlens.models import load_model
from tumorlens.training.trainer import TrainConfig, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "out"
MODELS = {  # name -> pretrained source
    "simple_cnn": None,
    "resnet18": None,
    "efficientnet_lite0": "imagenet",
}


def compare(args) -> None:
    data = SHARED / "brain-tumor-mri"
    samples = open_dataset(data)
    rows = []
    for name in args.models.split(","):
        out = OUT / f"compare-{name}"
        cfg = TrainConfig(data=str(data), out=str(out), model=name, pretrained=MODELS.get(name), size=args.size,
                          split="Training", epochs=args.epochs, seed=0, lr=args.lr)
        result = train(cfg, samples=samples.by_split("Training"))
        metrics = evaluate(load_model(result.checkpoint), samples, out / "testing")
        rows.append((name, cfg.pretrained or "none", result.seconds, metrics))
        print(name, metrics["all"]["accuracy"], flush=True)
    lines = [
        f"Command: `.venv/bin/python benchmarks/bench_training.py compare --epochs {args.epochs} --size {args.size} --models {args.models}`"
        f" ({time.strftime('%Y-%m-%d')}, 2 shared CPU cores). Trained on Kaggle Training (15 % held out), evaluated on Testing.",
        "",
        "| model | pretrained | train minutes | accuracy | macro-F1 | leakage-free accuracy | leakage-free macro-F1 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, pre, secs, m in rows:
        lf = m.get("leakage_free", m["all"])
        lines.append(f"| {name} | {pre} | {secs / 60:.1f} | {m['all']['accuracy']:.4f} | {m['all']['macro_f1']:.4f} | "
                     f"{lf['accuracy']:.4f} | {lf['macro_f1']:.4f} |")
    write_section("bench_training.py compare", "\n".join(lines))


def figshare(args) -> None:
    data = SHARED / "figshare-brain-tumor"
    samples = open_dataset(data)
    accs, f1s, secs = [], [], []
    for k, (train_idx, test_idx) in enumerate(patient_kfold(samples, k=args.folds, seed=0)):
        out = OUT / f"figshare-fold{k}"
        cfg = TrainConfig(data=str(data), out=str(out), model="efficientnet_lite0", pretrained="imagenet",
                          size=args.size, epochs=args.epochs, seed=k, lr=args.lr)
        result = train(cfg, samples=samples.subset(train_idx))
        metrics = evaluate(load_model(result.checkpoint), samples.subset(test_idx), out / "test", split=None)
        accs.append(metrics["all"]["accuracy"])
        f1s.append(metrics["all"]["macro_f1"])
        secs.append(result.seconds)
        print(f"fold {k}: accuracy {accs[-1]:.4f}", flush=True)
        _write_figshare(args, accs, f1s, secs)  # after every fold, so a cut-off run still reports what it measured


def _write_figshare(args, accs, f1s, secs) -> None:
    done = f"{len(accs)} of {args.folds} folds done" if len(accs) < args.folds else f"all {args.folds} folds"
    lines = [
        f"Command: `.venv/bin/python benchmarks/bench_training.py figshare --epochs {args.epochs} --size {args.size} --folds {args.folds}`"
        f" ({time.strftime('%Y-%m-%d')}; {done}). EfficientNet-Lite0 (ImageNet), folds grouped by patient (no patient in two folds).",
        "",
        "| fold | " + " | ".join(str(k) for k in range(len(accs))) + " | mean |",
        "|---|" + "---:|" * (len(accs) + 1),
        "| accuracy | " + " | ".join(f"{a:.4f}" for a in accs) + f" | **{np.mean(accs):.4f}** |",
        "| macro-F1 | " + " | ".join(f"{a:.4f}" for a in f1s) + f" | {np.mean(f1s):.4f} |",
        "| train minutes | " + " | ".join(f"{s / 60:.1f}" for s in secs) + f" | {statistics.mean(secs) / 60:.1f} |",
    ]
    write_section("bench_training.py figshare", "\n".join(lines))
    (OUT / "figshare_cv.json").write_text(json.dumps({"accuracy": accs, "macro_f1": f1s}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["compare", "figshare"])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    {"compare": compare, "figshare": figshare}[args.what](args)


if __name__ == "__main__":
    main()
