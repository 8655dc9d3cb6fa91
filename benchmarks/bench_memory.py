"""What keeping freed memory (tumorlens/memory.py) buys: the default model's passes with glibc's
default allocation and with tumorlens's, each in its own process, alternating.

Per pass kind (training step, forward+backward to the input as the gradient explainers run it,
inference forward) and allocation mode: wall and CPU seconds split into user and kernel time,
minor page faults, and peak resident memory of the process.

usage: .venv/bin/python benchmarks/bench_memory.py [--passes 8] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from results import write_section

# One process, one mode: the default model at its own size, batch 32 (training, explainers) or 64
# (inference), on random input (the allocation pattern does not depend on the pixels).
CHILD = r"""
import json, resource, sys, time, torch
import tumorlens
from tumorlens.assets import default_model_path
from tumorlens.memory import reuse_freed_memory
from tumorlens.models import load_model
kind, passes, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = load_model(default_model_path())
net = model.net.to(memory_format=torch.channels_last)
size = model.recipe.size
if kind == "train":
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x, y = torch.randn(32, 1, size, size), torch.randint(0, model.num_classes, (32,))
    def one():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
elif kind == "input_grad":
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.randn(32, 1, size, size)
    def one():
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(net(xi)[:, 0].sum(), xi)
else:
    net.eval()
    x = torch.randn(64, 1, size, size)
    def one():
        with torch.inference_mode():
            net(x)
one()  # warm-up
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(passes):
    one()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"reuse": reuse_freed_memory(), "wall": (t1 - t0) / passes, "user": (r1.ru_utime - r0.ru_utime) / passes,
                  "sys": (r1.ru_stime - r0.ru_stime) / passes, "faults": (r1.ru_minflt - r0.ru_minflt) / passes,
                  "peak_mb": r1.ru_maxrss / 1024, "size": size}))
"""

KINDS = {"train": "training step, batch 32", "input_grad": "forward+backward to the input, batch 32",
         "infer": "inference forward, batch 64"}
MODES = {"tumorlens": None, "glibc default": "system"}


def run_child(kind: str, mode: str | None, passes: int, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TUMORLENS_MALLOC"}
    if mode:
        env["TUMORLENS_MALLOC"] = mode
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(passes), str(threads)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passes", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    for kind, label in KINDS.items():
        runs = {m: [] for m in MODES}
        for r in range(args.repeats):
            order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]  # alternate, so load drift favours neither
            for m in order:
                runs[m].append(run_child(kind, MODES[m], args.passes, args.threads))
        med = {m: {k: statistics.median(x[k] for x in runs[m]) for k in ("wall", "user", "sys", "faults", "peak_mb")}
               for m in MODES}
        speedup = statistics.median(b["wall"] / a["wall"] for a, b in zip(runs["tumorlens"], runs["glibc default"]))
        size = runs["tumorlens"][0]["size"]
        for m in MODES:
            d = med[m]
            rows.append(f"| {label} | {m} | {d['wall'] * 1000:.0f} | {d['user'] * 1000:.0f} | {d['sys'] * 1000:.0f} | "
                        f"{d['faults']:,.0f} | {d['peak_mb']:,.0f} | " + (f"**{speedup:.2f}**" if m == "tumorlens" else "") + " |")
        print(label, {m: {k: round(v, 3) for k, v in med[m].items()} for m in MODES}, f"speed-up {speedup:.2f}", flush=True)
    body = [
        f"Command: `.venv/bin/python benchmarks/bench_memory.py --passes {args.passes} --repeats {args.repeats} "
        f"--threads {args.threads}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; default model, {size} px, "
        f"{args.threads} torch thread(s); each cell the median of {args.repeats} processes per mode, run alternately; "
        f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after).",
        "",
        "`tumorlens` = freed memory kept for reuse (tumorlens/memory.py, the default); `glibc default` = "
        "`TUMORLENS_MALLOC=system`. Times per pass; speed-up = glibc wall time / tumorlens wall time (median of the "
        "per-repeat ratios).",
        "",
        "| pass | allocation | wall ms | user CPU ms | kernel CPU ms | page faults | peak RSS MB | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    write_section("bench_memory.py", "\n".join(body))


if __name__ == "__main__":
    main()
