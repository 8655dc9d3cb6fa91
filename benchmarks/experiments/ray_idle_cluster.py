"""Issue 28: does an idle local Ray cluster slow the driver's own stages (the explainer comparison),
or is the extra time of a --ray demo audit the second process's cold start?

In one process, the demo audit (`tumorlens audit --demo`'s options) in this order: in process
before Ray is started; in process beside a fresh local cluster (ray.init(num_cpus=2)); with --ray
(one worker); in process again beside the now idle cluster (Ray Data's actors left behind); --ray
again; in process; Ray shut down, in process. Prints each audit's wall, image pass, explainer
comparison and robustness stage, the driver's CPU and Ray's processes' CPU.

    .venv/bin/python benchmarks/experiments/ray_idle_cluster.py [--out runs/ray_idle_cluster]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/ray_idle_cluster"))
    args = ap.parse_args()

    from tumorlens.runtime import configure_process

    configure_process()  # as the command line does, before torch loads
    import ray
    from bench_ray import audit_once

    from tumorlens.assets import default_model_path
    from tumorlens.audit.commands import demo_samples

    model, samples, opts = str(default_model_path()), demo_samples(), dict(compare_n=10, training_data="stored")

    def one(label: str, address: str | None) -> None:
        out = args.out / label.replace(",", "").replace(" ", "_")
        got = audit_once(model, samples, out, opts, address, 1 if address else None)
        t = json.loads((out / "summary.json").read_text())["timing_seconds"]
        print(f"| {label} | {got['wall_s']} | {t['per_image']} | {t['explainers']} | {t['checks']['robustness']} | "
              f"{got['driver_cpu_s']} | {got['cluster_cpu_s']} |", flush=True)

    print("| audit | wall s | image pass s | explainer comparison s | robustness s | driver CPU s | Ray's CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    one("in process, no Ray", None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    one("in process, fresh cluster", None)
    one("--ray 1", "auto")
    one("in process, idle cluster after Ray Data", None)
    one("--ray 2", "auto")
    one("in process, idle cluster after Ray Data 2", None)
    ray.shutdown()
    one("in process, Ray shut down", None)


if __name__ == "__main__":
    main()
