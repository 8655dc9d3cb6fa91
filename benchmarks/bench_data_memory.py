"""Peak memory of the commands that read whole datasets, with lazy samples (issue 14, item 5).

Measures, each command in its own process under `/usr/bin/time -v` (peak resident set size):
- `tumorlens data check` on the Kaggle set and on a synthetic set four times its size (every
  Kaggle image in four orientations: as stored, mirrored, flipped, mirrored and flipped; same
  layout, sizes and JPEG coding, no two copies near twins of each other);
- `tumorlens audit` on the Kaggle set with the default model;
- `tumorlens data check` on BraTS-sized NIfTI volumes (make-volumes), which did not fit in memory before;
each with tumorlens' memory setting and with glibc's defaults (TUMORLENS_MALLOC=system).

usage:
  .venv/bin/python benchmarks/bench_data_memory.py make-4x /tmp/kaggle4x   # once, about 2 min
  .venv/bin/python benchmarks/bench_data_memory.py make-volumes /tmp/volumes --n 40   # once
  .venv/bin/python benchmarks/bench_data_memory.py run --big /tmp/kaggle4x [--jobs check,big,audit] [--no-write]
  .venv/bin/python benchmarks/bench_data_memory.py passes   # memory of one model pass by its size (audit/config.py)
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
from results import KAGGLE, REPO as ROOT, write_section  # noqa: E402

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


def make_volumes(dest: Path, n: int) -> None:
    """n BraTS-sized NIfTI volumes (240 x 240 x 155 float32, 34 MB each before gzip) in two class folders."""
    import nibabel as nib
    import numpy as np
    from tqdm import tqdm

    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[-1:1:155j, -1:1:240j, -1:1:240j].astype(np.float32)
    head = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 + (zz / 0.95) ** 2 < 1).transpose(2, 1, 0)
    for i in tqdm(range(n), desc="writing volumes", unit="volume"):
        out = dest / ("glioma" if i % 2 else "notumor") / f"case{i:03d}.nii.gz"
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        vol = (head * rng.normal(400, 60, head.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), out)


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


# One process per row: the default model passes 64 random 224 px images through `kind` (forward:
# the audit's probabilities; else an explainer) in passes of `size`, and prints the resident memory
# the passes added (glibc keeps it: memory.py) and the seconds.
PASS_SCRIPT = """
import sys, time
from tumorlens.runtime import configure_process
configure_process()
import numpy as np
from tumorlens.assets import default_model_path
from tumorlens.audit.forward import probabilities01, to_input
from tumorlens.explain import explain
from tumorlens.models.checkpoint import load_model
def rss_mb():
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmRSS"))
kind, size = sys.argv[1], int(sys.argv[2])
model = load_model(default_model_path())
images = np.random.default_rng(0).random((64, 224, 224), dtype=np.float32)
base, t0 = rss_mb(), time.perf_counter()
if kind == "forward":
    probabilities01(model, images, size)
else:
    explain(model, to_input(model, images), method=kind, targets=np.zeros(64, int), batch_size=size)
print(rss_mb() - base, time.perf_counter() - t0)
"""


# images per pass tried for each kind (Saliency at 32 already adds 3.4 GB: no larger)
PASS_SIZES = {"forward": (8, 16, 32, 64), "localise": (4, 8, 16, 32), "saliency": (4, 8, 16)}


def pass_memory(sizes: dict[str, tuple[int, ...]] = PASS_SIZES) -> None:
    """Resident memory a model pass adds, by images per pass: what AuditConfig's pass limits rest on."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TUMORLENS_MALLOC", None)
    rows = []
    load0 = os.getloadavg()[0]
    for kind, kind_sizes in sizes.items():
        for size in kind_sizes:
            out = subprocess.run([sys.executable, "-c", PASS_SCRIPT, kind, str(size)], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            rows.append((kind, size, float(out[0]), float(out[1])))
            print(f"{kind:10s} {size:3d} images/pass: +{rows[-1][2]:6.0f} MB  {rows[-1][3]:5.1f} s", flush=True)
    table = ["| pass | images per pass | resident MB added | s for 64 images |", "|---|---:|---:|---:|"]
    table += [f"| {k} | {n} | {mb:,.0f} | {sec:.1f} |" for k, n, mb, sec in rows]
    body = (f"Command: `.venv/bin/python benchmarks/bench_data_memory.py passes` (main at {_commit()}, "
            f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; 1-min load average {load0:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after). The default model on 64 random 224 px images, one process per row, "
            "tumorlens' memory setting on: the memory the passes added (kept by the process) and their time. "
            "`forward`: the audit's probabilities; `localise`, `saliency`: explainers with backward passes.\n\n"
            + "\n".join(table))
    write_section(f"{SECTION} (passes)", body)


def _commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-4x")
    mk.add_argument("dest", type=Path)
    mv = sub.add_parser("make-volumes")
    mv.add_argument("dest", type=Path)
    mv.add_argument("--n", type=int, default=40)
    run = sub.add_parser("run")
    run.add_argument("--big", type=Path, required=True, help="the set made by make-4x")
    run.add_argument("--jobs", default="check,big,audit",
                     help="which of: check (Kaggle), big (the 4x set), audit, volumes (data check on --volumes)")
    run.add_argument("--volumes", type=Path, help="the set made by make-volumes")
    run.add_argument("--modes", default="tumorlens,system")
    run.add_argument("--no-write", action="store_true")
    sub.add_parser("passes", help="memory of one model pass by its size")
    a = ap.parse_args()
    if a.cmd == "passes":
        pass_memory()
        return
    if a.cmd == "make-4x":
        make_4x(a.dest)
        return
    if a.cmd == "make-volumes":
        make_volumes(a.dest, a.n)
        return

    exe = str(Path(sys.executable).with_name("tumorlens"))
    n_big = sum(1 for p in a.big.rglob("*.jpg"))
    model = ROOT / "src" / "tumorlens" / "assets" / "default_model.pt"
    every = {"check": ("data check, Kaggle (7,019 files)", [exe, "data", "check", str(KAGGLE), "--json"]),
             "big": (f"data check, 4x synthetic ({n_big:,} files)", [exe, "data", "check", str(a.big), "--json"]),
             "audit": ("audit, Kaggle, default model", [exe, "audit", "--data", str(KAGGLE), "--model", str(model),
                                                         "--out", "{tmp}/audit"])}
    if a.volumes is not None:
        n_vol = sum(1 for _ in a.volumes.rglob("*.nii.gz"))
        every["volumes"] = (f"data check, {n_vol} NIfTI volumes 240x240x155 ({n_vol * 155:,} slices)",
                            [exe, "data", "check", str(a.volumes), "--json"])
    jobs = [every[j] for j in a.jobs.split(",")]
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
    body = (f"Command: `.venv/bin/python benchmarks/bench_data_memory.py run --big {a.big} --jobs {a.jobs} "
            f"--modes {a.modes}` (main at {_commit()}, {stamp}; "
            f"1-min load average {load0:.2f} before, {load1:.2f} after). Each command in its own process under "
            "`/usr/bin/time -v`; `tumorlens` = freed memory kept for reuse (memory.py, the default), `glibc default` = "
            "`TUMORLENS_MALLOC=system`. The 4x set: `bench_data_memory.py make-4x` (every Kaggle image in four "
            "orientations, same layout).\n\n" + "\n".join(table))
    write_section(f"{SECTION} ({'audit' if a.jobs == 'audit' else a.jobs.replace(',', ', ')})", body)


if __name__ == "__main__":
    main()
