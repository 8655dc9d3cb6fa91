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
    with TreeCPU() as cpu:
        tumorlens.audit(model, samples, out, ray=ray, ray_workers=workers, progress=False, **opts)
    got = run_record(out, time.perf_counter() - t0)
    got.update(cpu_s=round(cpu.total_s, 1), driver_cpu_s=round(cpu.driver_s, 1), cluster_cpu_s=round(cpu.others_s, 1))
    (out / "bench_cpu.json").write_text(json.dumps({k: got[k] for k in ("cpu_s", "driver_cpu_s", "cluster_cpu_s")}))
    return got


def run_record(out: Path, wall: float) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    t = summary["timing_seconds"]
    cpu = json.loads((out / "bench_cpu.json").read_text()) if (out / "bench_cpu.json").exists() else {}
    return {**cpu, "wall_s": round(wall, 2), "per_image_s": t["per_image"], "data_checks_s": t["data_checks"],
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


def _usage() -> dict:
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": time.process_time(), "user_s": r.ru_utime, "system_s": r.ru_stime, "minor_faults": r.ru_minflt}


def _where() -> dict:
    """What the process running a chunk looks like: threads, niceness, the thread it runs on."""
    import threading

    import torch

    return {"torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX"),
            "affinity": sorted(os.sched_getaffinity(0)), "niceness": os.nice(0),
            "main_thread": threading.current_thread() is threading.main_thread(),
            "mkldnn": torch.backends.mkldnn.enabled, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _timed_chunk(work, item) -> dict:
    """One chunk through `work`, with the wall time and this process's CPU time, kernel time and page faults."""
    u0, t0 = _usage(), time.perf_counter()
    done = work(item)
    u1 = _usage()
    return {"wall_s": round(time.perf_counter() - t0, 2), **{k: round(u1[k] - u0[k], 2) for k in u0},
            "stages_s": {k: round(v, 2) for k, v in done.seconds.items()}, "where": _where()}


class TimedWorker:
    """ChunkWorker on a Ray actor, reporting _timed_chunk of each chunk and its own start-up."""

    def __init__(self, load_model, config, checks):
        from tumorlens.audit.chunk_work import ChunkWorker

        u0, t0 = _usage(), time.perf_counter()
        self.work = ChunkWorker(load_model, config, checks)
        self.start = {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(_usage()["cpu_s"] - u0["cpu_s"], 2)}

    def __call__(self, item) -> dict:
        return {**_timed_chunk(self.work, item), "actor_init": self.start}


CHUNK_ENVS = {  # the workers' settings per Ray variant (tumorlens.cluster.worker_env is replaced by these)
    "ray-ray-defaults": {"OMP_WAIT_POLICY": "PASSIVE"},  # as before the fix: niceness 15, one glibc arena per thread
    "ray-niceness-0": {"OMP_WAIT_POLICY": "PASSIVE", "RAY_worker_niceness": "0"},
    "ray-one-arena": {"OMP_WAIT_POLICY": "PASSIVE", "MALLOC_ARENA_MAX": "1"},
    "ray-fixed": None,  # worker_env() as shipped
}


def chunk_probe(data: Path, n: int, reps: int, rounds: int, variants: list[str]) -> dict:
    """The audit's per-chunk work (process_chunk, every map_chunk check) on one chunk of n seeded Kaggle
    Testing slices, `reps` times in this process and `reps` times on one Ray actor (a fresh one per
    variant and round, 2 CPUs: ordered_map with one worker) under each variant's worker settings;
    variants interleaved `rounds` times."""
    from functools import partial

    import ray

    import tumorlens.cluster as cluster
    from tumorlens.assets import default_model_path
    from tumorlens.audit.checks import AuditContext, default_checks
    from tumorlens.audit.chunk_work import maps_chunks, process_chunk
    from tumorlens.audit.config import AuditConfig
    from tumorlens.audit.runner import select_images
    from tumorlens.data.sources import open_dataset
    from tumorlens.evaluation.inference import truth_indices
    from tumorlens.models.loading import load_model

    samples = open_dataset(data.resolve(), progress=False)
    audited, _ = select_images(samples, n, 0)
    path = str(default_model_path())
    model = load_model(path)
    cfg = AuditConfig(progress=False)
    ctx = AuditContext(model=model, config=cfg, samples=samples, audited=audited, audited_split="Testing",
                       truth=truth_indices(model, audited), out=Path("/tmp"))
    checks = [c for c in default_checks() if maps_chunks(c)]
    for c in checks:
        c.start(ctx)
    item = (0, audited.samples, ctx.truth)
    shipped = cluster.worker_env
    out: dict[str, list] = {v: [] for v in ["in-process"] + variants}
    for r in range(rounds):
        for v in out:
            c0, t0 = time.process_time(), time.perf_counter()
            if v == "in-process":
                got = [_timed_chunk(lambda it: process_chunk(ctx, checks, *it), item) for _ in range(reps)]
            else:
                cluster.worker_env = (lambda env=CHUNK_ENVS[v]: dict(env)) if CHUNK_ENVS[v] is not None else shipped
                worker = partial(TimedWorker, partial(load_model, path), cfg, checks)
                got = list(cluster.ordered_map(worker, [item] * reps, address="auto", workers=1))
                cluster.worker_env = shipped
            run = {"round": r, "chunks": got, "wall_s": round(time.perf_counter() - t0, 2),
                   "driver_cpu_s": round(time.process_time() - c0, 2)}
            out[v].append(run)
            print(f"round {r} {v}: " + ", ".join(f"{g['wall_s']} s wall, {g['cpu_s']} CPU s ({g['system_s']} kernel), "
                                                 f"{g['minor_faults']} faults" for g in got)
                  + f"; whole {run['wall_s']} s, driver CPU {run['driver_cpu_s']} s", flush=True)
    summary = {}
    for v, runs in out.items():
        chunks = [g for run in runs for g in run["chunks"]]
        summary[v] = {k: statistics.median(g[k] for g in chunks) for k in ("wall_s", "cpu_s", "system_s", "minor_faults")}
        summary[v]["where"] = chunks[0]["where"]
    return {"n": n, "reps": reps, "rounds": rounds, "load_average_at_end": os.getloadavg(), "median_per_chunk": summary,
            "runs": out}


class TreeCPU:
    """CPU seconds of this process and every process under it (the local Ray cluster: raylet, GCS,
    workers), polled every 0.5 s so that workers which exit between polls are counted up to their last poll."""

    def __init__(self):
        import threading

        import psutil

        self._me = psutil.Process()
        self._seen: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        for p in self._me.children(recursive=True):
            try:
                t = p.cpu_times()
                self._seen[(p.pid, p.create_time())] = t.user + t.system
            except Exception:  # noqa: BLE001 (gone between listing and reading)
                pass

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._poll()

    def __enter__(self):
        self._poll()
        self._before = dict(self._seen)
        self._driver0 = time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._poll()
        self.driver_s = time.process_time() - self._driver0
        self.others_s = sum(v - self._before.get(k, 0.0) for k, v in self._seen.items())
        self.total_s = self.driver_s + self.others_s


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
    ap.add_argument("--chunk", type=int, default=None, help="no audits: one chunk of this many of --data's Testing "
                    "slices through process_chunk in process and on one Ray actor per --chunk-variants (wall, CPU, "
                    "kernel time, page faults of the process doing the work)")
    ap.add_argument("--chunk-reps", type=int, default=2, help="the chunk this many times per variant and round")
    ap.add_argument("--chunk-rounds", type=int, default=1)
    ap.add_argument("--chunk-variants", default="ray-ray-defaults,ray-fixed",
                    help=f"Ray variants, of {', '.join(CHUNK_ENVS)}")
    args = ap.parse_args()
    if args.chunk:
        from tumorlens.runtime import configure_process

        configure_process()
        import ray

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        report = chunk_probe(args.data, args.chunk, args.chunk_reps, args.chunk_rounds, args.chunk_variants.split(","))
        ray.shutdown()
        print(json.dumps(report["median_per_chunk"], indent=2))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "chunk_probe.json").write_text(json.dumps(report, indent=2))
        return None
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
                  f"{got['data_checks_s']} s), {got['n_images']} images; CPU {got['cpu_s']} s (driver "
                  f"{got['driver_cpu_s']}, Ray's processes {got['cluster_cpu_s']})", flush=True)
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
            "cpu_s": [x.get("cpu_s") for x in rs], "driver_cpu_s": [x.get("driver_cpu_s") for x in rs],
            "cluster_cpu_s": [x.get("cluster_cpu_s") for x in rs],
            "verdicts_identical": all(x["verdict"] == base["verdict"] for x in rs),
            "counts_identical": all(x["n_images"] == base["n_images"] and x["confusion"] == base["confusion"] for x in rs),
            "csv_other_columns_identical": all(d[2] for d in diffs),
            "csv_largest_float_difference": max(d[0] for d in diffs), "csv_column": max(diffs)[1],
        }
    inproc = report["variants"]["in-process"]
    for label, v in report["variants"].items():
        v["wall_vs_in_process"] = round(v["median_wall_s"] / inproc["median_wall_s"] - 1, 3)
        v["image_pass_vs_in_process"] = round(v["median_per_image_s"] / inproc["median_per_image_s"] - 1, 3)
        if None not in v["cpu_s"] + inproc["cpu_s"]:
            v["median_cpu_s"] = statistics.median(v["cpu_s"])
            v["cpu_vs_in_process"] = round(v["median_cpu_s"] / statistics.median(inproc["cpu_s"]) - 1, 3)
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
