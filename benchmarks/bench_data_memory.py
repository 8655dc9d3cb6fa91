"""Peak memory of the commands that read whole datasets, with lazy samples (issue 14, item 5).

Measures, each command in its own process under `/usr/bin/time -v` (peak resident set size):
- `tumorlens data check` on the Kaggle set and on a synthetic set four times its size (every
  Kaggle image in four orientations: as stored, mirrored, flipped, mirrored and flipped; same
  layout, sizes and JPEG coding, no two copies near twins of each other);
- `tumorlens audit` on the Kaggle set with the default model;
each with tumorlens' memory setting and with glibc's defaults (TUMORLENS_MALLOC=system).

usage:
  .venv/bin/python benchmarks/bench_data_memory.py make-4x /tmp/kaggle4x   # once, about 2 min
  .venv/bin/python benchmarks/bench_data_memory.py run --big /tmp/kaggle4x [--skip-audit] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
SECTION = "bench_data_memory.py"
VARIANTS = ("id", "mirror", "flip", "rot180")


def make_4x(dest: Path) -> None:
    from PIL import Image
    from tqdm import tqdm

    files = sorted(p for p in KAGGLE.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    ops = {"id": None, "mirror": Image.Transpose.FLIP_LEFT_RIGHT, "flip": Image.Transpose.FLIP_TOP_BOTTOM,
           "rot180": Image.Transpose.ROTATE_180}

    def one(src: Path) -> None:
        rel = src.relative_to(KAGGLE)
        with Image.open(src) as im:
            im.load()
            for name, op in ops.items():
                out = dest / rel.parent / f"{rel.stem}_{name}{rel.suffix}"
                if out.exists():
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                (im if op is None else im.transpose(op)).save(out, quality=95)

    with ThreadPoolExecutor(2) as pool:
        list(tqdm(pool.map(one, files), total=len(files), desc="writing the 4x set", unit="file"))


def peak_rss(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(peak RSS in MB, wall seconds, CPU seconds) of one command under /usr/bin/time -v."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr))
    return int(m.group(1)) / 1024, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-4x")
    mk.add_argument("dest", type=Path)
    run = sub.add_parser("run")
    run.add_argument("--big", type=Path, required=True, help="the set made by make-4x")
    run.add_argument("--skip-audit", action="store_true")
    run.add_argument("--modes", default="tumorlens,system")
    run.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    if a.cmd == "make-4x":
        make_4x(a.dest)
        return

    exe = str(Path(sys.executable).with_name("tumorlens"))
    n_big = sum(1 for p in a.big.rglob("*.jpg"))
    jobs = [("data check, Kaggle (7,019 files)", [exe, "data", "check", str(KAGGLE), "--json"]),
            (f"data check, 4x synthetic ({n_big:,} files)", [exe, "data", "check", str(a.big), "--json"])]
    if not a.skip_audit:
        jobs.append(("audit, Kaggle, default model", [exe, "audit", "--data", str(KAGGLE), "--out", "{tmp}/audit"]))
    rows = []
    load0 = os.getloadavg()[0]
    for mode in a.modes.split(","):
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        if mode == "system":
            env["TUMORLENS_MALLOC"] = "system"
        else:
            env.pop("TUMORLENS_MALLOC", None)
        for label, cmd in jobs:
            with tempfile.TemporaryDirectory() as tmp:
                rss, wall, cpu = peak_rss([c.replace("{tmp}", tmp) for c in cmd], env)
            rows.append((label, mode, rss, wall, cpu))
            print(f"{label:45s} {mode:10s} {rss:8.0f} MB {wall:7.1f} s wall {cpu:7.1f} s CPU", flush=True)
    load1 = os.getloadavg()[0]
    if a.no_write:
        return
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = ["| command | allocation | peak RSS MB | wall s | CPU s |", "|---|---|---:|---:|---:|"]
    table += [f"| {lab} | {'tumorlens' if m == 'tumorlens' else 'glibc default'} | {r:,.0f} | {w:.1f} | {c:.1f} |"
              for lab, m, r, w, c in rows]
    body = (f"Command: `.venv/bin/python benchmarks/bench_data_memory.py run --big {a.big}` ({stamp}; "
            f"1-min load average {load0:.2f} before, {load1:.2f} after). Each command in its own process under "
            "`/usr/bin/time -v`; `tumorlens` = freed memory kept for reuse (memory.py, the default), `glibc default` = "
            "`TUMORLENS_MALLOC=system`. The 4x set: `bench_data_memory.py make-4x` (every Kaggle image in four "
            "orientations, same layout).\n\n" + "\n".join(table))
    write_section(SECTION, body)


if __name__ == "__main__":
    main()
