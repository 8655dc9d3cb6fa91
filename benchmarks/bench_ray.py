"""Issue 28: the same audit in process and with --ray (a local Ray cluster, ray.init(num_cpus=2)),
with 1 and 2 Ray workers: identical verdict statuses and counts, the continuous figures' largest
difference, Ray's overhead with one worker and the throughput of two workers against one.

    python benchmarks/bench_ray.py --runs 3                          # the demo (tumorlens audit --demo)
    python benchmarks/bench_ray.py --data ../shared/data/brain-tumor-mri --limit 200 --runs 3
    python benchmarks/bench_ray.py --data ../shared/data/brain-tumor-mri --runs 1 --workers 2

The variants run interleaved (in process, 1 worker, 2 workers; again) so that the load of a shared
machine falls on all of them; the medians over the runs are printed. All audits run in this one
process (the Ray driver), so no variant pays Python's start-up and the in-process one runs beside
an idle local cluster. Options as the command line's: --demo's (compare_n 10, stored training
hashes) for the demo, the defaults for a dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def audit_once(model, samples, out: Path, opts: dict, ray: str | None, workers: int | None) -> dict:
    import tumorlens

    t0 = time.perf_counter()
    tumorlens.audit(model, samples, out, ray=ray, ray_workers=workers, progress=False, **opts)
    return run_record(out, time.perf_counter() - t0)


def run_record(out: Path, wall: float) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    t = summary["timing_seconds"]
    return {"wall_s": round(wall, 2), "per_image_s": t["per_image"], "data_checks_s": t["data_checks"],
            "n_images": summary["n_images"], "verdict": [(c["name"], c["status"]) for c in summary["verdict"]["checks"]],
            "confusion": summary["classification"]["all"]["confusion_matrix"], "out": str(out)}


RUN_LINE = re.compile(r"^run (\d+) (\S+): ([\d.]+) s")


def runs_from_log(log: Path, out: Path) -> dict[str, list[dict]]:
    """The runs a (stopped) benchmark printed, read back from its log lines and output folders."""
    runs: dict[str, list[dict]] = {}
    for line in log.read_text().splitlines():
        if m := RUN_LINE.match(line):
            r, label, wall = int(m[1]), m[2], float(m[3])
            runs.setdefault(label, []).append(run_record(out / f"{label}-{r}", wall))
    return runs


def largest_difference(a: Path, b: Path) -> tuple[float, str, bool]:
    """(largest absolute difference over the float columns of gradcam_analysis.csv, its column,
    whether every other column is identical)."""
    x, y = pd.read_csv(a / "gradcam_analysis.csv"), pd.read_csv(b / "gradcam_analysis.csv")
    if list(x.columns) != list(y.columns) or len(x) != len(y):
        return float("inf"), "columns or rows differ", False
    worst, where, same = 0.0, "", True
    for col in x.columns:
        if x[col].dtype.kind == "f" and y[col].dtype.kind == "f":
            d = np.nanmax(np.abs(x[col].to_numpy() - y[col].to_numpy()), initial=0.0)
            nan_same = bool((x[col].isna() == y[col].isna()).all())
            same &= nan_same
            if d > worst:
                worst, where = float(d), col
        else:
            same &= list(x[col]) == list(y[col])
    return worst, where, same


def per_image_costs(data: Path, n: int, seed: int = 0) -> dict:
    """CPU seconds per image (time.process_time: every thread of this process, so a loaded machine
    stretches the wall time, not these) of the audit's per-image work on n Testing slices, one torch
    thread: reading and preprocessing plus the model pass, the per-image map, each check's
    map_chunk, a robustness subset image, the data check's read + hash, the predicted tumor mask."""
    import types

    import torch

    from tumorlens.anatomy.regions import segment_regions
    from tumorlens.assets import default_model_path
    from tumorlens.audit import chunk_work
    from tumorlens.audit.checks import AuditContext, default_checks
    from tumorlens.audit.checks.tumor_masks import TumorMaskCheck
    from tumorlens.audit.config import AuditConfig
    from tumorlens.audit.counterfactuals import background_value
    from tumorlens.audit.runner import select_images
    from tumorlens.data.checks import _measure
    from tumorlens.data.sources import open_dataset
    from tumorlens.data.streaming import map_images
    from tumorlens.evaluation.inference import truth_indices
    from tumorlens.models.loading import load_model

    torch.set_num_threads(1)
    chunk_work.time = types.SimpleNamespace(perf_counter=time.process_time)  # its stage timer counts CPU time here
    samples = open_dataset(data.resolve())
    audited, _ = select_images(samples, n, seed)
    model = load_model(str(default_model_path()))
    cfg = AuditConfig(robustness_n=n, progress=False)
    ctx = AuditContext(model=model, config=cfg, samples=samples, audited=audited, audited_split="Testing",
                       truth=truth_indices(model, audited), out=Path("/tmp"))
    t0 = time.process_time()
    map_images(_measure, audited.samples, workers=1)
    measure = time.process_time() - t0
    t0 = time.process_time()
    TumorMaskCheck().start(ctx)
    masks = time.process_time() - t0
    t0 = time.process_time()  # reading and preprocessing alone (their share of process_chunk's first stage)
    display = [model.recipe.display(s.image) for s in audited.samples]
    regions = [segment_regions(d) for d in display]
    [background_value(d, r.background) for d, r in zip(display, regions)]
    [model.recipe.mask(s.mask, s.image) for s in audited.samples if s.mask is not None]
    prep = time.process_time() - t0
    checks = [c for c in default_checks() if chunk_work.maps_chunks(c)]
    for c in checks:
        c.start(ctx)
    t0 = time.process_time()
    done = chunk_work.process_chunk(ctx, checks, 0, audited.samples, ctx.truth)
    total = time.process_time() - t0
    per = {k: round(v / n, 4) for k, v in done.seconds.items()}
    per["read_preprocess_regions"] = round(prep / n, 4)
    per["model_pass"] = round((total - sum(done.seconds.values()) - prep) / n, 4)
    per["image_pass_total"] = round(total / n, 4)
    per["data_check_read_hash"] = round(measure / n, 4)
    per["predicted_tumor_mask"] = round(masks / n, 4)
    return {"n": n, "cpu_seconds_per_image": per, "torch_threads": 1,
            "note": "robustness: per image of its subset (14 shifts); the audit runs it on --robustness-n images; "
                    "model_pass: the clean forward pass (process_chunk's first stage less reading and preprocessing)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: the demo's bundled slices)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to run")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_ray"))
    ap.add_argument("--from-log", type=Path, default=None, help="no audits: the report of a stopped run, from its "
                    "log (the 'run ...' lines) and --out folders")
    ap.add_argument("--costs", type=int, default=None, help="no audits: CPU seconds per image of the per-image "
                    "work on this many of --data's Testing slices (one torch thread)")
    args = ap.parse_args()
    if args.costs:
        report = per_image_costs(args.data, args.costs)
        print(json.dumps(report, indent=2))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "per_image_costs.json").write_text(json.dumps(report, indent=2))
        return None
    name = "demo" if args.data is None else args.data.name
    if args.from_log is not None:
        runs = runs_from_log(args.from_log, args.out)
        return write_report(runs, args, name, min(len(v) for v in runs.values()))

    from tumorlens.runtime import configure_process

    configure_process()  # as the command line does, before torch loads
    import ray

    from tumorlens.assets import default_model_path
    from tumorlens.audit.commands import demo_samples
    from tumorlens.data.sources import open_dataset

    model = str(default_model_path())
    if args.data is None:
        samples, opts = demo_samples(), dict(compare_n=10, training_data="stored")
    else:
        samples, opts = open_dataset(args.data.resolve()), dict(compare_n=16)
    if args.limit:
        opts["limit"] = args.limit
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    variants = [("in-process", None, None)] + [(f"ray-{w}", "auto", int(w)) for w in args.workers.split(",")]
    runs: dict[str, list[dict]] = {v[0]: [] for v in variants}
    for r in range(args.runs):
        for label, address, workers in variants:
            got = audit_once(model, samples, args.out / f"{label}-{r}", opts, address, workers)
            runs[label].append(got)
            print(f"run {r} {label}: {got['wall_s']} s (image pass {got['per_image_s']} s, data checks "
                  f"{got['data_checks_s']} s), {got['n_images']} images", flush=True)
    ray.shutdown()
    write_report(runs, args, name, args.runs)


def write_report(runs: dict[str, list[dict]], args, name: str, n_runs: int) -> None:
    runs = {label: rs[:n_runs] for label, rs in runs.items()}  # complete rounds only
    base = runs["in-process"][0]
    report = {"data": name, "limit": args.limit, "runs": n_runs, "cpus": args.cpus, "os_cpus": os.cpu_count(),
              "load_average_at_end": os.getloadavg(), "variants": {}}
    for label, rs in runs.items():
        diffs = [largest_difference(Path(base["out"]), Path(x["out"])) for x in rs]
        report["variants"][label] = {
            "wall_s": [x["wall_s"] for x in rs], "median_wall_s": statistics.median(x["wall_s"] for x in rs),
            "median_per_image_s": statistics.median(x["per_image_s"] for x in rs),
            "median_data_checks_s": statistics.median(x["data_checks_s"] for x in rs),
            "verdicts_identical": all(x["verdict"] == base["verdict"] for x in rs),
            "counts_identical": all(x["n_images"] == base["n_images"] and x["confusion"] == base["confusion"] for x in rs),
            "csv_other_columns_identical": all(d[2] for d in diffs),
            "csv_largest_float_difference": max(d[0] for d in diffs), "csv_column": max(diffs)[1],
        }
    inproc = report["variants"]["in-process"]
    for label, v in report["variants"].items():
        v["wall_vs_in_process"] = round(v["median_wall_s"] / inproc["median_wall_s"] - 1, 3)
        v["image_pass_vs_in_process"] = round(v["median_per_image_s"] / inproc["median_per_image_s"] - 1, 3)
    if "ray-1" in report["variants"] and "ray-2" in report["variants"]:
        one, two = report["variants"]["ray-1"], report["variants"]["ray-2"]
        report["two_vs_one_worker"] = {"wall": round(one["median_wall_s"] / two["median_wall_s"], 3),
                                       "image_pass": round(one["median_per_image_s"] / two["median_per_image_s"], 3)}
    report["verdict"] = base["verdict"]
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench_ray_{name}{'_' + str(args.limit) if args.limit else ''}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
