"""Audit benchmarks on the real data; writes the `bench_audit.py` section of benchmarks/RESULTS.md.

Parts (run one or several; each replaces only its own subsection):
  regions  validate segment_regions on all 3,064 figshare slices (tumor inside the brain region,
           background not swallowed by the head) and on Kaggle (background share, corners), speed.
  speed    time full `tumorlens audit` runs with the default model (Kaggle Testing, figshare, --demo)
           and record what the audit found.

    .venv/bin/python benchmarks/bench_audit.py regions
    .venv/bin/python benchmarks/bench_audit.py speed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402  (benchmarks/results.py: data paths, one RESULTS.md section per script)
from results import FIGSHARE, KAGGLE, RESULTS  # noqa: E402
SECTION = "bench_audit.py"
# what the user set, read before the tumorlens command line starts (it sets OMP_WAIT_POLICY=PASSIVE as its default)
USER_ENV = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS") if k in os.environ}


def write_subsection(name: str, body: str) -> None:
    results.write_subsection(SECTION, name, body)


# -- regions --------------------------------------------------------------------------------------
def bench_regions() -> str:
    import pandas as pd
    from tqdm import tqdm

    from tumorlens.anatomy.regions import PEEL_FRACTION, RING_FRACTION, segment_regions
    from tumorlens.assets import default_model_path
    from tumorlens.models import load_model

    recipe = load_model(default_model_path()).recipe  # the audit segments the model's own display image
    meta = pd.read_csv(FIGSHARE / "metadata.csv")
    tumor_total = tumor_in_brain = tumor_in_head = 0
    per_slice, bg_share, corners_bg, seg_ms = [], [], [], []
    by_class: dict[str, list[int]] = {}
    for idx, cls in tqdm(list(zip(meta["index"], meta["class_name"])), desc="figshare regions", unit="img"):
        raw = cv2.imread(str(FIGSHARE / "images" / f"{idx}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        mask = cv2.imread(str(FIGSHARE / "masks" / f"{idx}.png"), cv2.IMREAD_GRAYSCALE) > 0
        image01 = recipe.display(raw)
        tumor = recipe.mask(mask, raw)
        t0 = time.perf_counter()
        reg = segment_regions(image01)
        seg_ms.append((time.perf_counter() - t0) * 1000)
        n, nb = int(tumor.sum()), int((tumor & reg.brain).sum())
        tumor_total += n
        tumor_in_brain += nb
        tumor_in_head += int((tumor & reg.head).sum())
        c = by_class.setdefault(cls, [0, 0])
        c[0] += n
        c[1] += nb
        if n:
            per_slice.append(nb / n)
        bg_share.append(reg.background.mean())
        corners_bg.append(reg.background[[0, 0, -1, -1], [0, -1, 0, -1]].mean())
    per_slice = np.array(per_slice)

    kag_bg, kag_corners, kag_empty = [], [], 0
    kag_files = sorted((KAGGLE / "Testing").glob("*/*.jpg")) + sorted((KAGGLE / "Training").glob("*/*.jpg"))
    for f in tqdm(kag_files, desc="kaggle regions", unit="img"):
        raw = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        reg = segment_regions(recipe.display(raw))
        kag_empty += int(not reg.head.any())
        kag_bg.append(reg.background.mean())
        kag_corners.append(reg.background[[0, 0, -1, -1], [0, -1, 0, -1]].mean())

    cls_lines = "\n".join(
        f"| {cls} | {v[1] / v[0]:.4f} |" for cls, v in sorted(by_class.items())
    )
    return f"""Command: `.venv/bin/python benchmarks/bench_audit.py regions` ({time.strftime('%Y-%m-%d')}).
segment_regions on the default model's display image ({recipe.size} px, clip {recipe.clip_low:g}-{recipe.clip_high:g} percentiles): ring = {RING_FRACTION} x head radius, dark bone
peeled up to {PEEL_FRACTION} x radius deeper.

Figshare, all {len(meta)} slices, expert tumor masks brought to model geometry:

| measure | value |
|---|---|
| tumor pixels inside the brain region (pooled, target >= 0.98) | **{tumor_in_brain / tumor_total:.4f}** |
| tumor pixels inside the head | {tumor_in_head / tumor_total:.4f} |
| slices with >= 95 % of their tumor inside the brain | {(per_slice >= 0.95).mean():.4f} |
| worst slice: share of its tumor inside the brain | {per_slice.min():.3f} |
| image area called background (median, 5th-95th pct) | {np.median(bg_share):.3f} ({np.percentile(bg_share, 5):.3f}-{np.percentile(bg_share, 95):.3f}) |
| image corners called background | {np.mean(corners_bg):.4f} |
| ms per slice (median) | {np.median(seg_ms):.2f} |

| class | tumor pixels inside brain |
|---|---|
{cls_lines}

Kaggle, all {len(kag_files)} slices (no masks): image area called background median
{np.median(kag_bg):.3f} (5th-95th pct {np.percentile(kag_bg, 5):.3f}-{np.percentile(kag_bg, 95):.3f}),
corners called background {np.mean(kag_corners):.4f}, slices with no head found {kag_empty}.
"""


# -- speed: full audit runs -----------------------------------------------------------------------
def run_audit(args: list[str], out: Path) -> tuple[float, float, tuple[float, float], dict]:
    """(wall seconds, CPU seconds of the audit process, load average before/after, summary)."""
    import resource

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [str(ROOT / ".venv" / "bin" / "tumorlens"), "audit", *args, "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"audit failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return elapsed, cpu, (load0, os.getloadavg()[0]), json.loads((out / "summary.json").read_text())


def _finding_lines(summary: dict) -> str:
    v = summary.get("verdict", {})
    lines = [f"- {line}" for line in v.get("findings", [])]
    a = summary.get("attention", {}).get("all", {})
    if a:
        lines.append(f"- focus of correct predictions (Grad-CAM peak): {a.get('focus_counts_correct')}")
    ex = summary.get("explainers") or []
    if ex:
        lines.append("- explainers (method: energy in tumor / deletion AUC / insertion AUC / sanity / ms per image): "
                     + "; ".join(f"{r['method']}: {_f(r.get('energy_tumor'))} / {_f(r['deletion_auc'])} / "
                                 f"{_f(r['insertion_auc'])} / {'pass' if r['sanity_passed'] else 'fail'} / "
                                 f"{r['ms_per_image']:.0f}" for r in ex))
    t = summary.get("timing_seconds", {})
    if t:
        lines.append("- stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()))
    return "\n".join(lines) if lines else "- (no findings recorded)"


def _short(arg: str) -> str:
    """Paths as a reader in the repository would type them."""
    if not arg.startswith("/"):
        return arg
    p = Path(arg)
    if p.is_relative_to(ROOT):
        return str(p.relative_to(ROOT))
    return "../" + str(p.relative_to(ROOT.parent)) if p.is_relative_to(ROOT.parent) else arg


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def bench_speed(out_root: Path, which: list[str]) -> None:
    """One subsection per audit run ("audit: demo", "audit: kaggle", "audit: figshare")."""
    from tumorlens.assets import default_model_path

    model = default_model_path()
    runs = {
        "demo": (["--demo"], 120),
        "kaggle": (["--model", str(model), "--data", str(KAGGLE)], 300),
        "figshare": (["--model", str(model), "--data", str(FIGSHARE)], 600),
    }
    shown_model = model.relative_to(ROOT) if model.is_relative_to(ROOT) else model
    for name in which:
        args, budget = runs[name]
        secs, cpu, load, summary = run_audit(args, out_root / name)
        shown = " ".join(_short(a) for a in args)
        env = " ".join(f"{k}={v}" for k, v in USER_ENV.items())
        env = env + " " if env else ""
        body = f"""Command: `{env}tumorlens audit {shown} --out {out_root / name}` ({time.strftime('%Y-%m-%d %H:%M')}),
via `{env}.venv/bin/python benchmarks/bench_audit.py speed --runs {name}`; model `{shown_model}`.

| images audited | wall s | CPU s (audit process) | budget s | within budget | 1-min load before / after |
|---:|---:|---:|---:|---|---|
| {summary.get('n_images')} | {secs:.0f} | {cpu:.0f} | {budget} | {'yes' if secs <= budget else 'NO'} | {load[0]:.1f} / {load[1]:.1f} |

Two CPU cores shared with other jobs: with a load above 2 the audit gets only part of them, so wall time
overstates what it needs on an idle machine.

What the audit found:

{_finding_lines(summary)}
"""
        write_subsection(f"audit: {name}" + (f" ({env.strip()})" if env else ""), body)
        print(f"{name}: {secs:.0f} s wall, {cpu:.0f} s CPU", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="+", choices=["regions", "speed"])
    ap.add_argument("--runs", default="demo,kaggle,figshare", help="speed: which audits to run")
    ap.add_argument("--out", default="/tmp/tumorlens-bench-audit", help="speed: where audit reports go")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if "regions" in args.parts:
        write_subsection("regions", bench_regions())
    if "speed" in args.parts:
        bench_speed(Path(args.out), args.runs.split(","))
    print(f"wrote section {SECTION} of {RESULTS}")


if __name__ == "__main__":
    main()
