"""Dataset-check benchmark on the shared data; writes the `bench_data_check.py` section of RESULTS.md.

Measures (all in one run):
- wall time of the check on both shared datasets, median of 3: in process (read + check) and
  through the command line (`tumorlens data check DATASET`, interpreter start-up included);
- the leakage it finds in the Kaggle set: Testing images with a near twin in Training, at the
  default threshold and at 0-8 bits;
- the calibration of the Hamming threshold: how often re-encodings of one slice still match
  (300 Kaggle Testing slices), and how often a figshare slice matches a slice of another patient
  (false twins) or of the same patient;
- on figshare, what a slice-level split leaks compared with a patient split.

Usage: .venv/bin/python benchmarks/bench_data_check.py
"""

from __future__ import annotations

import io
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402  (benchmarks/results.py: one RESULTS.md section per script)

ROOT = Path(__file__).resolve().parents[1]
from results import FIGSHARE, KAGGLE, SHARED_DATA as SHARED  # noqa: E402,F401
SECTION = "bench_data_check.py"
THRESHOLDS = (0, 2, 4, 6, 8)
REPEATS = 3


def write_section(body: str) -> None:
    """Replace only our own `## bench_data_check.py` section."""
    results.write_section(SECTION, body)


def time_in_process(path: Path, **kw):
    from tumorlens.data.checks import check_dataset
    from tumorlens.data.sources import open_dataset

    times, report = [], None
    for _ in range(REPEATS):
        c0, t0 = time.process_time(), time.perf_counter()
        ds = open_dataset(path, progress=False)
        t1 = time.perf_counter()
        report = check_dataset(ds, progress=False, **kw)
        times.append((t1 - t0, time.perf_counter() - t1, time.perf_counter() - t0, time.process_time() - c0))
    return [statistics.median(x) for x in zip(*times)], report


def time_cli(path: Path) -> tuple[float, float]:
    """Median (wall, CPU) seconds of the command, interpreter start-up included."""
    exe = ROOT / ".venv" / "bin" / "tumorlens"
    times = []
    for _ in range(REPEATS):
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run([str(exe), "data", "check", str(path), "--json"], check=True, capture_output=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append((time.perf_counter() - t0, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime))
    return tuple(statistics.median(x) for x in zip(*times))


def reencoding_recall(n: int = 300, seed: int = 0) -> dict[str, list[float]]:
    """Share of slices whose re-encoded copy stays within each threshold of the original's hash."""
    from tumorlens.data.checks import phash64
    from tumorlens.data.sources import open_dataset

    ds = open_dataset(KAGGLE / "Testing", progress=False)
    idx = np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False)

    def variants(u8):
        im = Image.fromarray(u8)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=70)
        yield "JPEG quality 70", np.asarray(Image.open(buf))
        yield "resampled 224->256->224", np.asarray(im.resize((256, 256), Image.BICUBIC).resize((224, 224), Image.BOX))
        yield "brightness x1.1 + 5", np.clip(u8 * 1.1 + 5, 0, 255)
        yield "gamma 0.8", 255 * (u8 / 255.0) ** 0.8
        yield "shifted 2 px", np.roll(u8, 2, axis=1)

    dist: dict[str, list[int]] = {}
    for i in idx:
        u8 = np.clip(ds.samples[i].image, 0, 255).astype(np.uint8)
        h0 = phash64(u8)
        for name, v in variants(u8):
            dist.setdefault(name, []).append(bin(h0 ^ phash64(np.asarray(v, np.float32))).count("1"))
    return {k: [float(np.mean(np.array(v) <= t)) for t in THRESHOLDS] for k, v in dist.items()}


def patient_twin_rates() -> tuple[list[float], list[float]]:
    """Figshare: share of slices with a twin from another patient (false) / the same patient."""
    from tumorlens.data.checks import hash_samples
    from tumorlens.data.sources import open_dataset

    ds = open_dataset(FIGSHARE, progress=False)
    h, valid = hash_samples(ds.samples, progress=False)
    pid = np.array([s.patient_id for s in ds.samples])
    d = np.bitwise_count(h[:, None] ^ h[None, :]).astype(np.int16)
    np.fill_diagonal(d, 99)
    same = pid[:, None] == pid[None, :]
    other_min = np.where(same, 99, d).min(axis=1)
    same_min = np.where(same, d, 99).min(axis=1)
    return ([float(np.mean(other_min <= t)) for t in THRESHOLDS], [float(np.mean(same_min <= t)) for t in THRESHOLDS])


def main() -> None:
    from tumorlens.data.checks import DEFAULT_HAMMING

    for p in (KAGGLE, FIGSHARE):
        if not p.is_dir():
            sys.exit(f"missing shared data: {p}")
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    print("Kaggle: in-process check x3 ...", flush=True)
    (k_read, k_check, k_total, k_cpu), kr = time_in_process(KAGGLE)
    print("Kaggle: CLI x3 ...", flush=True)
    k_cli, k_cli_cpu = time_cli(KAGGLE)
    print("figshare: in-process check x3 ...", flush=True)
    (f_read, f_check, f_total, f_cpu), fr = time_in_process(FIGSHARE, simulate_split="slice")
    print("figshare: CLI x3 ...", flush=True)
    f_cli, f_cli_cpu = time_cli(FIGSHARE)
    load1 = os.getloadavg()[0]
    from tumorlens.data.checks import check_dataset
    from tumorlens.data.sources import open_dataset

    fp = check_dataset(open_dataset(FIGSHARE, progress=False), progress=False, simulate_split="patient")
    print("calibration ...", flush=True)
    recall = reencoding_recall()
    other_rate, same_rate = patient_twin_rates()

    n_test = kr.cross_split["Testing->Training"]["images"]
    n_twin = len(kr.near_twins_testing)
    cs = kr.cross_split["Testing->Training"]
    th = " | ".join(f"<= {t}" for t in THRESHOLDS)
    sep = "|---" * (len(THRESHOLDS) + 1) + "|"
    lines = [
        f"Command: `.venv/bin/python benchmarks/bench_data_check.py` ({date.today().isoformat()}; 2 CPU cores "
        f"shared with other jobs: 1-minute load average {load0:.1f} at the start of the timings, {load1:.1f} at "
        f"their end; whole script {time.perf_counter() - started:.0f} s). Default threshold: pHash Hamming <= "
        f"{DEFAULT_HAMMING}.",
        "",
        "### Speed (median of 3)",
        "",
        "Wall time depends on what else runs on the two cores; CPU time (all threads) does much less.",
        "",
        "| dataset | slices | read | check | read + check (CPU) | `tumorlens data check DATASET`, start-up "
        "included (CPU) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| Kaggle brain-tumor-mri | {kr.n_samples} | {k_read:.1f} s | {k_check:.1f} s | {k_total:.1f} s "
        f"({k_cpu:.1f} s) | {k_cli:.1f} s ({k_cli_cpu:.1f} s) |",
        f"| figshare (converted) | {fr.n_samples} | {f_read:.1f} s | {f_check:.1f} s | {f_total:.1f} s "
        f"({f_cpu:.1f} s) | {f_cli:.1f} s ({f_cli_cpu:.1f} s) |",
        "",
        "### Leakage found in the Kaggle set",
        "",
        f"Testing images with a near twin in Training (<= {DEFAULT_HAMMING} bits): **{n_twin} of {n_test} "
        f"({100 * n_twin / n_test:.1f} %)**; exact hash matches {100 * kr.twin_share_by_threshold[0]:.1f} % "
        f"(the README's \"about a third\"). Twin pairs with different labels: {cs['label_conflicts']}. "
        f"Within Training {kr.within_split['Training']['images_with_twin']} images "
        f"({100 * kr.within_split['Training']['share']:.1f} %) have a near duplicate, within Testing "
        f"{kr.within_split['Testing']['images_with_twin']} ({100 * kr.within_split['Testing']['share']:.1f} %).",
        "",
        f"| threshold | {th} |",
        sep,
        "| Testing with a twin in Training | "
        + " | ".join(f"{100 * kr.twin_share_by_threshold[t]:.1f} %" for t in THRESHOLDS) + " |",
        "",
        "Confounders it reports: "
        + "; ".join(f[len("confounder: "):].split("; a model")[0] for f in kr.findings if f.startswith("confounder"))
        + ".",
        "",
        "### Threshold calibration",
        "",
        "Re-encodings of 300 Kaggle Testing slices still matching their original (share), and figshare slices "
        "with a twin among another patient's slices (false twins) or the same patient's:",
        "",
        f"| | {th} |",
        sep,
        *[f"| {k} | " + " | ".join(f"{100 * v:.1f} %" for v in vals) + " |" for k, vals in recall.items()],
        "| figshare: twin from another patient (false) | " + " | ".join(f"{100 * v:.1f} %" for v in other_rate) + " |",
        "| figshare: twin from the same patient | " + " | ".join(f"{100 * v:.1f} %" for v in same_rate) + " |",
        "",
        f"pHash distances are even (each 64-bit hash has 32 bits set), so 2 is the first step above an exact match. "
        f"From <= 2 to <= 4, gamma-changed copies matched rise from {100 * recall['gamma 0.8'][1]:.0f} % to "
        f"{100 * recall['gamma 0.8'][2]:.0f} %, but false twins across patients from {100 * other_rate[1]:.1f} % to "
        f"{100 * other_rate[2]:.1f} % (x{other_rate[2] / max(other_rate[1], 1e-9):.0f}); the default stays at "
        f"{DEFAULT_HAMMING}.",
        "",
        "### figshare: patients",
        "",
        f"{fr.patients['n_patients']} patients; {fr.within_split['(all)']['pairs']} near-duplicate pairs, "
        f"{fr.patients['duplicate_pairs_same_patient']} of them within one patient. Simulated 80/20 split of all "
        f"slices: by slice, {fr.simulated_split['val_with_twin_in_train']} of {fr.simulated_split['val']} validation "
        f"slices ({100 * fr.simulated_split['share']:.1f} %) have a twin in training and "
        f"{fr.simulated_split['patients_on_both_sides']} patients sit on both sides; by patient, "
        f"{fp.simulated_split['val_with_twin_in_train']} of {fp.simulated_split['val']} "
        f"({100 * fp.simulated_split['share']:.1f} %) and {fp.simulated_split['patients_on_both_sides']} patients.",
    ]
    body = "\n".join(lines)
    write_section(body)
    print(body)


if __name__ == "__main__":
    main()
