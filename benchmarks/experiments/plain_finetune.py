"""The yardstick issue 3 quotes: a plain fine-tune of the bundled EfficientNet-Lite0, tested
after every epoch: on Kaggle Training -> Testing, or on one patient-grouped figshare fold (the
same folds as bench_training.py figshare). Nothing of tumorlens's training is used on purpose
(own loading, /255 scaling, a bare PyTorch loop; only the model comes from tumorlens's registry),
so a gap between this and `tumorlens train` points at the recipe, not at the data. Used for the "training recipe probes" in RESULTS.md.

usage: .venv/bin/python benchmarks/experiments/plain_finetune.py [--data kaggle|figshare] [--fold 0] [--size 160]
       [--epochs 4] [--holdout 0.1] [--scale 255|minmax] [--no-flip] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/results.py
from results import SHARED_DATA as SHARED  # noqa: E402

KAGGLE_CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def _tensor(paths: list[Path], labels: list[int], size: int, scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("L").resize((size, size), Image.BILINEAR), np.float32)
        xs.append((a - a.min()) / max(a.max() - a.min(), 1e-6) if scale == "minmax" else a / 255.0)
    x = torch.from_numpy(np.stack(xs))[:, None]
    return (x - 0.45) / 0.225, torch.tensor(labels)


def kaggle(split: str, size: int, scale: str):
    folder = SHARED / "brain-tumor-mri" / split
    pairs = [(p, ci) for ci, c in enumerate(KAGGLE_CLASSES) for p in sorted((folder / c).iterdir())]
    return _tensor([p for p, _ in pairs], [c for _, c in pairs], size, scale)


def figshare_fold(fold: int, size: int, scale: str):
    """(train, test) tensors of one patient-grouped fold, the folds of bench_training.py figshare."""
    from tumorlens.data.sources import open_dataset
    from tumorlens.data.splits import patient_kfold

    samples = open_dataset(SHARED / "figshare-brain-tumor")
    train_idx, test_idx = list(patient_kfold(samples, k=5, seed=0))[fold]
    labels = samples.label_indices()
    paths = [Path(s.path) for s in samples.samples]
    return tuple(_tensor([paths[i] for i in idx], [int(labels[i]) for i in idx], size, scale)
                 for idx in (train_idx, test_idx))


def lite0(num_classes: int) -> torch.nn.Module:
    from tumorlens.models import build_model

    net = build_model("efficientnet_lite0", num_classes, pretrained="imagenet")
    return net.to(memory_format=torch.channels_last)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=["kaggle", "figshare"], default="kaggle")
    ap.add_argument("--fold", type=int, default=0, help="figshare: which of the 5 patient-grouped folds is tested")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--holdout", type=float, default=0.0, help="share of Training left out (as a validation split would)")
    ap.add_argument("--scale", choices=["255", "minmax"], default="255")
    ap.add_argument("--no-flip", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.time()
    if args.data == "kaggle":
        (x_train, y_train), (x_test, y_test) = kaggle("Training", args.size, args.scale), kaggle("Testing", args.size, args.scale)
    else:
        (x_train, y_train), (x_test, y_test) = figshare_fold(args.fold, args.size, args.scale)
    if args.holdout:
        keep = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[int(args.holdout * len(x_train)):]
        x_train, y_train = x_train[keep], y_train[keep]
    net = lite0(int(y_train.max()) + 1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    steps = args.epochs * (len(x_train) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.1)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train) - 31, 32):
            idx = perm[i : i + 32]
            x = x_train[idx]
            if not args.no_flip:
                flip = torch.rand(len(idx)) < 0.5
                x[flip] = x[flip].flip(-1)
            loss = F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.inference_mode():
            pred = torch.cat([net(x_test[i : i + 128].contiguous(memory_format=torch.channels_last)).argmax(1)
                              for i in range(0, len(x_test), 128)])
        print(f"epoch {epoch}: test accuracy {(pred == y_test).float().mean():.4f} "
              f"({time.time() - started:.0f} s since start)", flush=True)


if __name__ == "__main__":
    main()
