"""Issue 30: the input check ("is this a brain MRI slice?") on real slices, shifted slices and foreign images.

    .venv/bin/python scripts/build_input_reference.py        # first: the features this reads, and the shipped reference
    .venv/bin/python benchmarks/bench_input_check.py [--only compare,alarms,catches,cost] [--heldout]

compare: the detectors on the same segmenter features (runs/input_reference/features.npz), each
  with its threshold at the same quantile of the validation images' scores: false alarms on
  validation slices shifted by tumorlens.shifts (300 slices x 14 shifts), AUROC of validation
  images against the foreign set, and the share of foreign images caught; plus the energy score of
  the default model's logits (Liu et al. 2020; its threshold on the same validation images).
  Kaggle Testing and the held-out patients are not read.
alarms: the whole check (rules + learned) on every Kaggle Testing slice, every figshare slice of the
  188 development patients, and 300 Testing slices under each of the 14 robustness shifts; with
  --heldout also the 45 held-out figshare patients (read once, at the end).
catches: the share of the foreign set (tumorlens.inputcheck.foreign, built from installed packages)
  flagged, by kind: rules alone, learned check alone, both.
cost: `tumorlens serve` p50/p95 latency of /v1/predict from one client, with and without the learned
  check (--no-learned-input-check), same uploads, same machine, alternating runs.
Each part writes its own `### ` subsection of the `## bench_input_check.py (issue 30)` section.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "scripts"))
from results import FIGSHARE, KAGGLE, write_subsection  # noqa: E402

SECTION = "bench_input_check.py (issue 30)"
FEATURES = ROOT / "runs" / "input_reference" / "features.npz"
# optional: the same slices plus one copy of each under training's acquisition augmentation
# (scripts/build_input_reference.py --acquired-features runs/input_reference/features_with_acquired.npz)
ACQUIRED = ROOT / "runs" / "input_reference" / "features_with_acquired.npz"
N_SHIFTED = 300  # slices per shift


def shifted_copies(images: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """shift name -> the images under it, as 8-bit-range arrays (what a file of them would give)."""
    from build_input_reference import display256

    from tumorlens.shifts import standard_shifts

    base = np.stack([display256(im) for im in images])
    out = {}
    for shift in tqdm(standard_shifts(), desc="shifting", unit="shift"):
        shifted = np.concatenate([shift(base[i : i + 64], i) for i in range(0, len(base), 64)])
        out[shift.name] = [np.clip(s, 0, 1) * 255 for s in shifted]
    return out


def read_images(ds, desc: str) -> list[np.ndarray]:
    images = []
    for chunk in ds.chunks(64, progress=True, desc=desc):
        images += chunk.images
    return images


def seeded_subset(items: list, n: int, seed: int = 0) -> list:
    idx = np.sort(np.random.default_rng(seed).choice(len(items), size=min(n, len(items)), replace=False))
    return [items[i] for i in idx]


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


# -- compare ----------------------------------------------------------------------------------------
def energy_scores(images: list[np.ndarray]) -> np.ndarray:
    """-logsumexp(logits) of the bundled default model: higher = less like its training data."""
    import torch

    from tumorlens.assets import default_model_path
    from tumorlens.models.loading import load_model

    model = load_model(default_model_path())
    out = []
    for i in tqdm(range(0, len(images), 32), desc="default model logits", unit="batch"):
        logits = model.logits(model.prepare(images[i : i + 32]))
        out.append((-torch.logsumexp(logits, dim=1)).numpy())
    return np.concatenate(out)


def bench_compare(args) -> list[str]:
    from build_input_reference import HELDOUT, reference_sets

    from tumorlens.inputcheck.detector import QUANTILE, fit_reference
    from tumorlens.inputcheck.features import shared_extractor
    from tumorlens.inputcheck.foreign import foreign_images

    if not FEATURES.is_file():
        raise SystemExit(f"{FEATURES} is missing: run scripts/build_input_reference.py first")
    d = dict(np.load(FEATURES))
    kag, fig, _, val = reference_sets(KAGGLE, FIGSHARE, HELDOUT)
    samples = kag.samples + fig.samples
    val_images = read_images(type(kag)([samples[i] for i in val], []), "validation slices")
    shifted = shifted_copies(seeded_subset(val_images, N_SHIFTED))
    extract = shared_extractor()
    shifted_x = {name: extract(ims) for name, ims in tqdm(shifted.items(), desc="features of shifted", unit="shift")}
    foreign = foreign_images()
    kinds = np.array([f.kind for f in foreign])
    foreign_x = extract([f.image for f in foreign])

    rows = []

    def row(name, val_s, shifted_s, foreign_s, quantile=QUANTILE):
        t = float(np.quantile(val_s, quantile))
        auc = float((foreign_s[:, None] > val_s[None]).mean() + 0.5 * (foreign_s[:, None] == val_s[None]).mean())
        worst = max(shifted_s, key=lambda k: (shifted_s[k] > t).mean())
        all_shifted = np.concatenate(list(shifted_s.values()))
        by_kind = ", ".join(f"{k} {np.mean(foreign_s[kinds == k] > t):.2f}" for k in dict.fromkeys(kinds))
        rows.append(f"| {name} | {auc:.4f} | {pct(np.mean(all_shifted > t))} (worst: {worst} "
                    f"{pct(np.mean(shifted_s[worst] > t))}) | {pct(np.mean(foreign_s > t))} | {by_kind} |")

    configs = [("Mahalanobis, PCA 96 (shipped)", "mahalanobis", 96, 5), ("Mahalanobis, PCA 64", "mahalanobis", 64, 5),
               ("Mahalanobis, PCA 32", "mahalanobis", 32, 5), ("kNN (k = 5), PCA 96", "knn", 96, 5),
               ("kNN (k = 1), PCA 96", "knn", 96, 1)]
    for name, kind, comps, k in configs:
        ref = fit_reference(d["fit_x"], d["fit_group"], d["val_x"], kind=kind, components=comps, k=k)
        row(name, ref.score(d["val_x"]), {n: ref.score(x) for n, x in shifted_x.items()}, ref.score(foreign_x))
    if ACQUIRED.is_file():  # the variant that also fits one acquired copy of each slice (see the module docstring)
        a = dict(np.load(ACQUIRED))
        ref = fit_reference(a["fit_x"], a["fit_group"], a["val_x"], components=96, quantile=0.995)
        row("Mahalanobis, PCA 96, fit and threshold (0.995) with acquired copies", ref.score(a["val_x"]),
            {n: ref.score(x) for n, x in shifted_x.items()}, ref.score(foreign_x), quantile=0.995)
    if not args.no_energy:
        row("energy score, default model logits", energy_scores(val_images),
            {n: energy_scores(ims) for n, ims in shifted.items()}, energy_scores([f.image for f in foreign]))
    return [
        f"Validation slices: {len(val)} (Kaggle Training's 10 % validation split, seed 0, and a patient-grouped 20 % "
        f"of the figshare development patients); fit: {len(d['fit_x'])} slices. Each detector's threshold: the "
        f"{QUANTILE} quantile of its validation scores (the acquired-copies row: 0.995 of the slices' and their "
        "copies' scores; copies from training's acquisition_window augmentation). Shifted: "
        f"{N_SHIFTED} clean validation slices x the 14 robustness shifts (tumorlens.shifts, not used in the fit). "
        f"Foreign: {len(foreign)} images ({', '.join(f'{k} {n}' for k, n in Counter(kinds).items())}); the "
        "detector alone, without the rules.",
        "",
        "| detector | AUROC validation vs foreign | false alarms, shifted validation | foreign caught | caught by kind |",
        "|---|---:|---:|---:|---|",
        *rows,
    ]


# -- alarms -----------------------------------------------------------------------------------------
def rates(checks) -> tuple[float, float, float]:
    """(flagged by anything, by the rules, by the learned detector) shares."""
    from tumorlens.inputcheck.check import LEARNED_CODE

    learned = [any(f.code == LEARNED_CODE for f in c.findings) for c in checks]
    rules = [any(f.code != LEARNED_CODE for f in c.findings) for c in checks]
    return np.mean([not c.ok for c in checks]), np.mean(rules), np.mean(learned)


def bench_alarms(args) -> list[str]:
    from build_input_reference import HELDOUT, heldout_patients

    from tumorlens.data.sources import open_dataset
    from tumorlens.inputcheck.check import check_samples
    from tumorlens.inputcheck import check_images

    def run(ds, desc):
        checks, flagged = [], []
        for chunk in ds.chunks(64, progress=True, desc=desc):
            cs = check_samples(chunk.samples, chunk.images)
            checks += cs
            flagged += [f"{Path(s.path).name} ({c.score:.1f})" if c.score is not None else Path(s.path).name
                        for s, c in zip(chunk.samples, cs) if not c.ok]
        return checks, flagged

    lines = ["| slices | n | flagged (any) | by the rules | by the learned check | target | flagged files (score) |",
             "|---|---:|---:|---:|---:|---:|---|"]

    def add(name, checks, flagged, target):
        a, r, l = rates(checks)
        shown = "; ".join(flagged[:6]) + (" ..." if len(flagged) > 6 else "")
        lines.append(f"| {name} | {len(checks)} | {pct(a)} ({sum(not c.ok for c in checks)}) | {pct(r)} | {pct(l)} | <= {target} | {shown} |")

    testing = open_dataset(KAGGLE / "Testing")
    add("Kaggle Testing", *run(testing, "Kaggle Testing"), "0.5 %")
    fig = open_dataset(FIGSHARE)
    held = heldout_patients(HELDOUT)
    dev = fig.subset([i for i, s in enumerate(fig.samples) if s.patient_id not in held])
    add("figshare, 188 development patients", *run(dev, "figshare dev"), "0.5 %")
    shifted = shifted_copies(seeded_subset(read_images(testing, "Testing pixels"), N_SHIFTED))
    all_checks, per_shift = [], []
    for name, ims in tqdm(shifted.items(), desc="checking shifted", unit="shift"):
        cs = check_images(ims)
        all_checks += cs
        per_shift.append(f"{name} {pct(np.mean([not c.ok for c in cs]))}")
    add(f"Kaggle Testing under 14 shifts ({N_SHIFTED} slices each)", all_checks, [], "1 %")
    if args.heldout:
        ho = fig.subset([i for i, s in enumerate(fig.samples) if s.patient_id in held])
        add("figshare, 45 held-out patients (read once)", *run(ho, "figshare held-out"), "0.5 %")
    return lines + ["", "Per shift: " + "; ".join(per_shift) + "."]


# -- catches ----------------------------------------------------------------------------------------
def bench_catches(args) -> list[str]:
    from tumorlens.inputcheck import check_images
    from tumorlens.inputcheck.foreign import MISSING_KINDS, brain_mr_from_packages, foreign_images

    foreign = foreign_images()
    checks = check_images([f.image for f in foreign])
    lines = ["| kind | images | caught (any) | by the rules | by the learned check | missed |", "|---|---:|---:|---:|---:|---|"]
    for kind in dict.fromkeys(f.kind for f in foreign):
        idx = [i for i, f in enumerate(foreign) if f.kind == kind]
        a, r, l = rates([checks[i] for i in idx])
        missed = ", ".join(foreign[i].name for i in idx if checks[i].ok) or "-"
        lines.append(f"| {kind} | {len(idx)} | {pct(a)} | {pct(r)} | {pct(l)} | {missed} |")
    a, r, l = rates(checks)
    lines.append(f"| all | {len(checks)} | {pct(a)} | {pct(r)} | {pct(l)} | |")
    brain = brain_mr_from_packages()
    bc = check_images([f.image for f in brain])
    lines += ["", "Not found on this machine: " + ", ".join(MISSING_KINDS) + ". Brain MR that packages ship but that is "
              "not the datasets' kind of slice (not counted above): " +
              "; ".join(f"{f.name} ({f.kind}): {'flagged' if not c.ok else 'passes'}, score {c.score:.1f}"
                        for f, c in zip(brain, bc) if c.score is not None) + f"; threshold {bc[0].threshold:.2f}."]
    return lines


# -- cost -------------------------------------------------------------------------------------------
def bench_cost(args) -> list[str]:
    from bench_service import Server, load_payloads, pct as percentile, run_load

    payloads = load_payloads(100)
    lat = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for learned in (True, False):
                sub = Path(tmp) / f"{learned}{rnd}"
                sub.mkdir()
                srv = Server(None, sub, None, None, extra=() if learned else ("--no-learned-input-check",))
                try:
                    run_load(srv.url, "/v1/predict", payloads, 30, 1, "warm-up")
                    got, errors, _, _ = run_load(srv.url, "/v1/predict", payloads, args.requests, 1,
                                                 f"predict, learned check {'on' if learned else 'off'}")
                    if errors:
                        raise SystemExit(f"errors: {errors[:3]}")
                    lat[learned] += got
                finally:
                    srv.stop()
    on, off = (percentile(lat[k], 50) for k in (True, False))  # bench_service.pct: milliseconds
    load = os.getloadavg()[0]
    return [f"`tumorlens serve` (default model, default settings), one client, {args.requests} /v1/predict requests "
            f"per server x {args.rounds} rounds, servers with and without the learned check alternating; uploads: 50 "
            f"Kaggle Testing JPEGs and 50 figshare PNGs. Machine load average (1 min) at the end: {load:.1f} on 2 cores "
            "(shared with other jobs: compare timings within this table only).",
            "",
            "| learned check | p50 ms | p95 ms |", "|---|---:|---:|",
            f"| off (rules only, as before) | {off:.1f} | {percentile(lat[False], 95):.1f} |",
            f"| on | {on:.1f} | {percentile(lat[True], 95):.1f} |",
            "", f"Added to the p50: {on - off:+.1f} ms ({100 * (on - off) / off:+.1f} %; target <= +10 %)."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="compare,alarms,catches,cost")
    ap.add_argument("--heldout", action="store_true", help="alarms: also the 45 held-out figshare patients (once)")
    ap.add_argument("--no-energy", action="store_true", help="compare: skip the energy score (224 px model passes)")
    ap.add_argument("--requests", type=int, default=100, help="cost: requests per server")
    ap.add_argument("--rounds", type=int, default=2, help="cost: on/off server pairs")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()
    if not KAGGLE.is_dir() or not FIGSHARE.is_dir():
        raise SystemExit(f"needs the real data in {KAGGLE.parent}")
    parts = {"compare": bench_compare, "alarms": bench_alarms, "catches": bench_catches, "cost": bench_cost}
    command = " ".join([".venv/bin/python benchmarks/bench_input_check.py"] + sys.argv[1:])
    for part in [p.strip() for p in args.only.split(",") if p.strip()]:
        t0 = time.perf_counter()
        lines = parts[part](args)
        body = (f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                f"{time.perf_counter() - t0:.0f} s).\n\n" + "\n".join(lines))
        print(f"### {part}\n\n{body}\n")
        if not args.no_write:
            write_subsection(SECTION, part, body)


if __name__ == "__main__":
    main()
