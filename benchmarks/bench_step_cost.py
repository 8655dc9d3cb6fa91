"""What one training step costs per architecture and size: seconds for forward + backward + AdamW on a
batch of 32 random one-channel images, one thread, channels-last (as `tumorlens train` runs them).
Median of the steps after a warm-up. Used to choose what a figshare CV can afford on this machine.

usage: .venv/bin/python benchmarks/bench_step_cost.py [--steps 4] [--models efficientnet_lite0@224,...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from results import write_section
from tumorlens.models.registry import build_model

DEFAULT = "efficientnet_lite0@224,efficientnet_lite1@224,efficientnet_lite2@224,efficientnet_lite2@240,efficientnet_lite2@256"


def step_seconds(arch: str, size: int, steps: int) -> float:
    net = build_model(arch, 3).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters())
    x = torch.randn(32, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (32,))
    times = []
    for _ in range(steps + 1):  # the first step is a warm-up
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--models", default=DEFAULT, help="comma-separated ARCH@SIZE")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for item in args.models.split(","):
        arch, size = item.split("@")
        rows.append((arch, int(size), step_seconds(arch, int(size), args.steps)))
        print(rows[-1], flush=True)
    base = rows[0][2]
    text = "\n".join(
        [f"Command: `.venv/bin/python benchmarks/bench_step_cost.py --steps {args.steps}` ({time.strftime('%Y-%m-%d')};"
         " batch 32, one thread, channels-last, forward + backward + AdamW; median of the steps after a warm-up; shared machine).",
         "", "| model | px | s / step | vs first row |", "|---|---:|---:|---:|",
         *[f"| {a} | {s} | {sec:.2f} | {sec / base:.2f}x |" for a, s, sec in rows]]
    )
    write_section("bench_step_cost.py", text)
    print(text)


if __name__ == "__main__":
    main()
