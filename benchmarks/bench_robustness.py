"""Robustness benchmarks; writes the `bench_robustness.py` section of benchmarks/RESULTS.md.

Parts (each replaces only its own subsection):
  shifts  every Kaggle Testing slice under every shift of tumorlens.shifts (evaluate_under_shifts,
          the clean pass included): accuracy, macro-F1, changed predictions, per-class recall, and
          the stage's cost as a ratio to the model passes it needs, measured in the same run.
  audit   the whole `tumorlens audit` of Kaggle Testing with the default model: wall time (budget
          300 s), the robustness verdict, the stage's cost ratio, accuracy per shift on its subset.

    .venv/bin/python benchmarks/bench_robustness.py shifts
    .venv/bin/python benchmarks/bench_robustness.py audit
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = ROOT.parent / "shared" / "data" / "brain-tumor-mri"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "bench_robustness.py"
BUDGET_S = 300


def write_subsection(name: str, body: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    sec_re = re.compile(rf"^## {re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    m = sec_re.search(text)
    section = m.group(0) if m else f"## {SECTION}\n\n"
    sub_re = re.compile(rf"^### {re.escape(name)}\n.*?(?=^### |\Z)", re.DOTALL | re.MULTILINE)
    new_sub = f"### {name}\n\n{body.strip()}\n\n"
    section = sub_re.sub(lambda _: new_sub, section) if sub_re.search(section) else section.rstrip() + "\n\n" + new_sub
    section = section.rstrip() + "\n\n"
    text = sec_re.sub(lambda _: section, text) if m else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def _load() -> float:
    return os.getloadavg()[0]


def shift_table(clean: dict, shifts: list[dict], classes: list[str]) -> str:
    head = "| shift | params | accuracy | drop (points) | macro-F1 | changed | " + " | ".join(classes) + " |"
    rule = "|---|---|---:|---:|---:|---:|" + "---:|" * len(classes)
    rows = [f"| clean | | {clean['accuracy']:.3f} | | {clean['macro_f1']:.3f} | | "
            + " | ".join(f"{clean['per_class'][c]['accuracy']:.3f}" for c in classes) + " |"]
    for m in shifts:
        params = ", ".join(f"{k} {v}" for k, v in m["params"].items() if k != "coefficients")
        if "coefficients" in m["params"]:
            params += ", seeded coefficients"
        rows.append(f"| {m['name']} | {params} | {m['accuracy']:.3f} | {(clean['accuracy'] - m['accuracy']) * 100:.1f} | "
                    f"{m['macro_f1']:.3f} | {m['changed']:.1%} | "
                    + " | ".join(f"{m['per_class'][c]['accuracy']:.3f}" for c in classes) + " |")
    return "\n".join([head, rule, *rows])


def bench_shifts(model_path: Path, data: Path, limit: int | None = None) -> str:
    import torch

    from tumorlens.data.sources import open_dataset
    from tumorlens.models.checkpoint import load_model
    from tumorlens.shifts import acquired_images, evaluate_under_shifts

    torch.set_num_threads(2)
    model = load_model(model_path)
    ds = open_dataset(data / "Testing" if (data / "Testing").is_dir() else data)
    index = {c: i for i, c in enumerate(model.classes)}
    truth = np.array([index[s.label] for s in ds.samples])
    if limit is not None:
        from tumorlens.audit.checks.robustness import stratified_subset

        ds = ds.subset(stratified_subset(truth, limit, 0))
        truth = np.array([index[s.label] for s in ds.samples])
    load0 = _load()
    images = acquired_images(model.recipe, [s.image for s in ds.samples])
    ev = evaluate_under_shifts(model, images, truth)
    clean, shifts = ev.clean(), ev.metrics()
    worst = max(shifts, key=lambda m: clean["accuracy"] - m["accuracy"])
    cmd = (f"`.venv/bin/python benchmarks/bench_robustness.py shifts --model {model_path} --data {data}"
           + (f" --limit {limit}`" if limit else "`"))
    return f"""Command: {cmd} ({time.strftime('%Y-%m-%d %H:%M')} UTC), model `{model.version}`, {len(truth)} slices of
`{data.name}/Testing`{' (seeded class-stratified subset)' if limit else ''}; every slice through the model clean and under each of the {len(shifts)} shifts of
`tumorlens.shifts` (TorchIO; JPEG via Pillow), each shifted image re-scaled by the recipe as a file would be.

{shift_table(clean, shifts, model.classes)}

Worst shift: {worst['name']}, {(clean['accuracy'] - worst['accuracy']) * 100:.1f} points below the clean accuracy.
Per-class columns: recall of each true class under the shift.

Cost, measured in this run: {ev.seconds_total:.0f} s in all, {ev.seconds_model:.0f} s of it in the model's forward
passes ({ev.model_passes} images), {ev.seconds_transforms:.0f} s in the shifts, re-scaling and bookkeeping: ratio
{ev.cost_ratio:.3f} of the stage to the model passes it needs (target <= 1.25). 1-min load {load0:.1f} / {_load():.1f}
before / after (2 shared cores).
"""


def bench_audit(model_path: Path, data: Path, out: Path, extra: list[str]) -> str:
    cmd = [str(Path(sys.executable).parent / "tumorlens"), "audit",
           "--model", str(model_path), "--data", str(data), "--out", str(out), *extra]
    load0 = _load()
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"audit failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    r = s["robustness"]
    check = next(c for c in s["verdict"]["checks"] if c["name"] == "robustness")
    lf = r.get("leakage_free")
    shown = " ".join(c if " " not in c else f"'{c}'" for c in cmd[1:])
    lines = [
        f"Command: `tumorlens {shown}` ({time.strftime('%Y-%m-%d %H:%M')} UTC), "
        f"via `.venv/bin/python benchmarks/bench_robustness.py audit`; model `{s['model']['version']}`.",
        "",
        "| images audited | wall s | budget s | within budget | robustness stage s | of it model passes s | "
        "ratio (target <= 1.25) | 1-min load before / after |",
        "|---:|---:|---:|---|---:|---:|---:|---|",
        f"| {s['n_images']} | {wall:.0f} | {BUDGET_S} | {'yes' if wall <= BUDGET_S else 'NO'} | "
        f"{r['cost']['seconds_total']:.0f} | {r['cost']['seconds_model']:.0f} | {r['cost']['ratio_total_to_model']:.3f} | "
        f"{load0:.1f} / {_load():.1f} |",
        "",
        f"Verdict line: **[{check['status']}] robustness**: {check['detail']}",
        "",
        f"Robustness ran on {r['subset']}; leakage-free part: {lf['n'] if lf else 'n/a'} images.",
        "",
        shift_table(r["clean"], r["shifts"], s["model"]["classes"]),
        "",
        "Stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in s.get("timing_seconds", {}).items()),
    ]
    if lf:
        lines += ["", "Leakage-free accuracy per shift: " + "; ".join(
            f"{m['name']} {m['leakage_free']['accuracy']:.3f}" for m in r["shifts"])
            + f" (clean {lf['clean']['accuracy']:.3f})"]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("parts", nargs="+", choices=["shifts", "audit"])
    p.add_argument("--model", type=Path, default=ROOT / "src" / "tumorlens" / "assets" / "default_model.pt")
    p.add_argument("--data", type=Path, default=KAGGLE)
    p.add_argument("--out", type=Path, default=Path("/tmp/tumorlens-bench-robustness/kaggle"))
    p.add_argument("--limit", type=int, default=None, help="shifts: a seeded class-stratified subset of N slices")
    p.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args, extra = p.parse_known_args(argv)
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found")
    for part in args.parts:
        body = (bench_shifts(args.model, args.data, args.limit) if part == "shifts"
                else bench_audit(args.model, args.data, args.out, extra))
        print(body)
        if not args.no_write:
            write_subsection({"shifts": "shifts: Kaggle Testing", "audit": "audit: Kaggle Testing"}[part], body)


if __name__ == "__main__":
    sys.exit(main())
