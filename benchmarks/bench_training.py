"""Training benchmarks on the real data (long: run in the background with nohup).

  compare  : train each architecture on Kaggle Training (validation held out), evaluate on
             Testing; accuracy, macro-F1 (all and leakage-free) and training time per model.
  figshare : 5-fold cross-validation on the figshare set, folds grouped by patient.

usage: .venv/bin/python benchmarks/bench_training.py compare [--epochs N] [--size S] [--models a,b]
       .venv/bin/python benchmarks/bench_training.py figshare [--epochs N] [--size S] [--folds K]

A figshare fold already trained and tested into its output folder with the same config (a probe
with --only-fold, or a cut-off run) is reused, not retrained: folds can run in parallel as
separate --only-fold processes, then the full command collects them and writes RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from results import write_section
from tumorlens.data.sources import open_dataset
from tumorlens.data.splits import patient_kfold
from tumorlens.evaluation.evaluate import evaluate
from tumorlens.models import load_model
from tumorlens.training.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
from results import SHARED_DATA as SHARED  # noqa: E402
OUT = Path(__file__).resolve().parent / "out"
MODELS = {  # name -> pretrained source
    "simple_cnn": None,
    "resnet18": None,
    "efficientnet_lite0": "imagenet",
}


def compare(args) -> None:
    data = SHARED / "brain-tumor-mri"
    samples = open_dataset(data)
    reuse = _pairs(args.reuse)
    epochs_for = {k: int(v) for k, v in _pairs(args.epochs_for).items()}
    rows = []
    for name in args.models.split(","):
        if name in reuse:  # a run trained earlier with `tumorlens train` (e.g. the default model's run)
            run = Path(reuse[name])
            run = run if run.is_absolute() else ROOT / run  # paths as typed from the repository root
            model = load_model(run / "model.pt")
            metrics = json.loads((run / "testing" / "metrics.json").read_text())
            epochs = model.provenance["epochs_run"]
            rows.append((name, model.provenance["config"]["pretrained"] or "none", model.recipe.size, epochs,
                         model.provenance["train_seconds"], metrics))
            _write_compare(args, rows)
            continue
        out = OUT / f"compare-{name}"
        epochs = epochs_for.get(name, args.epochs)
        cfg = TrainConfig(**{**dict(data=str(data), out=str(out), model=name, pretrained=MODELS.get(name), size=args.size,
                                    split="Training", epochs=epochs, seed=0, lr=args.lr), **_overrides(args)})
        result = train(cfg, samples=samples.by_split("Training"))
        metrics = evaluate(load_model(result.checkpoint), samples, out / "testing")
        rows.append((name, cfg.pretrained or "none", cfg.size, epochs, result.seconds, metrics))
        print(name, metrics["all"]["accuracy"], flush=True)
        _write_compare(args, rows)  # after every model, so a cut-off run still reports what it measured


def _write_compare(args, rows) -> None:
    lines = [
        f"Command: `.venv/bin/python benchmarks/bench_training.py compare {_flags(args)} --models {args.models}"
        f"{' --epochs-for ' + args.epochs_for if args.epochs_for else ''}{' --reuse ' + args.reuse if args.reuse else ''}`"
        f" ({time.strftime('%Y-%m-%d')}, 2 shared CPU cores). Trained on Kaggle Training"
        f" ({_overrides(args).get('val_fraction', TrainConfig.val_fraction):.0%} held out for validation), evaluated on Testing."
        + (f" Rows taken from earlier runs: {args.reuse}." if args.reuse else ""),
        "",
        "| model | pretrained | size | epochs | train minutes | accuracy | macro-F1 | leakage-free accuracy | leakage-free macro-F1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, pre, size, epochs, secs, m in rows:
        lf = m.get("leakage_free", m["all"])
        lines.append(f"| {name} | {pre} | {size} | {epochs} | {secs / 60:.1f} | {m['all']['accuracy']:.4f} | {m['all']['macro_f1']:.4f} | "
                     f"{lf['accuracy']:.4f} | {lf['macro_f1']:.4f} |")
    write_section("bench_training.py compare", "\n".join(lines))


def figshare(args) -> None:
    data = SHARED / "figshare-brain-tumor"
    samples = open_dataset(data)
    accs, f1s, secs = [], [], []
    for k, (train_idx, test_idx) in enumerate(patient_kfold(samples, k=args.folds, seed=0)):
        if args.only_fold is not None and k != args.only_fold:
            continue
        out = OUT / f"figshare-fold{k}{args.tag}"
        cfg = TrainConfig(**{**dict(data=str(data), out=str(out), model="efficientnet_lite0", pretrained="imagenet",
                                    size=args.size, epochs=args.epochs, seed=k, lr=args.lr), **_overrides(args)})
        done = _finished_fold(out, cfg)
        if done is not None:  # this fold was trained and tested with the same config before (e.g. a probe)
            metrics, seconds = done
            print(f"fold {k}: reusing {out}", flush=True)
        else:
            result = train(cfg, samples=samples.subset(train_idx))
            metrics = evaluate(load_model(result.checkpoint), samples.subset(test_idx), out / "test", split=None)
            seconds = result.seconds
        accs.append(metrics["all"]["accuracy"])
        f1s.append(metrics["all"]["macro_f1"])
        secs.append(seconds)
        print(f"fold {k}: accuracy {accs[-1]:.4f}", flush=True)
        _write_figshare(args, accs, f1s, secs)  # after every fold, so a cut-off run still reports what it measured


def _finished_fold(out: Path, cfg: TrainConfig) -> tuple[dict, float] | None:
    """(test metrics, training seconds) of a fold already run into `out` with exactly this config, else None."""
    if not (out / "test" / "metrics.json").exists() or not (out / "model.pt").exists():
        return None
    provenance = load_model(out / "model.pt").provenance
    if provenance.get("config") != asdict(cfg):
        return None
    return json.loads((out / "test" / "metrics.json").read_text()), provenance["train_seconds"]


def _pairs(text: str | None) -> dict[str, str]:
    """'a=1,b=2' -> {'a': '1', 'b': '2'}"""
    return dict(item.split("=", 1) for item in text.split(",")) if text else {}


def _overrides(args) -> dict:
    """TrainConfig overrides from the command line: the clip percentiles and any --set key=value."""
    overrides = {"clip_low": args.clip_low, "clip_high": args.clip_high}
    for key, text in _pairs(args.set).items():
        default = getattr(TrainConfig, key)  # AttributeError names an unknown key
        overrides[key] = text.lower() in ("1", "true", "yes") if isinstance(default, bool) else type(default)(text)
    return overrides


def _flags(args) -> str:
    flags = f"--epochs {args.epochs} --size {args.size} --clip-low {args.clip_low:g} --clip-high {args.clip_high:g}"
    return flags + (f" --set {args.set}" if args.set else "")


def _write_figshare(args, accs, f1s, secs) -> None:
    if args.only_fold is not None:  # a single-fold probe is printed, not written as the CV result
        return
    done = f"{len(accs)} of {args.folds} folds done" if len(accs) < args.folds else f"all {args.folds} folds"
    lines = [
        f"Command: `.venv/bin/python benchmarks/bench_training.py figshare {_flags(args)} --folds {args.folds}`"
        f" ({time.strftime('%Y-%m-%d')}; {done}). {_overrides(args).get('model', 'efficientnet_lite0')} (ImageNet),"
        " folds grouped by patient (no patient in two folds).",
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
    ap.add_argument("--clip-low", type=float, default=1.0)
    ap.add_argument("--clip-high", type=float, default=99.0)
    ap.add_argument("--epochs-for", default=None, help="per-model epochs, e.g. resnet18=4,simple_cnn=10")
    ap.add_argument("--reuse", default=None, help="name=RUN_DIR: take that model's row from an earlier run")
    ap.add_argument("--set", default=None, help="other TrainConfig fields, e.g. augment=flip,lr=3e-4")
    ap.add_argument("--tag", default="", help="suffix of the output folders (parallel probes)")
    ap.add_argument("--only-fold", type=int, default=None, help="train and test one fold only (printed, not written)")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    {"compare": compare, "figshare": figshare}[args.what](args)


if __name__ == "__main__":
    main()
