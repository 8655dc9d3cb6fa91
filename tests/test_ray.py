"""--ray: the audit and the data check on a local Ray cluster (ray.init(num_cpus=2), started once for
the module) give the in-process results; a worker that dies in the middle of an audit loses and
doubles no image; without --ray, Ray is never imported; a missing extra is a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import pytest
from serve_support import make_checkpoint

from tumorlens.audit.checks.base import Check, CheckResult
from tumorlens.data.synthetic import make_phantoms

N_TWINS = 3
N_TESTING = 63  # with the twins, less the damaged file: 65 audited images, two chunks of the image pass


def _write_split(root, samples, split, prefix):
    for i, s in enumerate(samples):
        d = root / split / s.label
        d.mkdir(parents=True, exist_ok=True)
        img = (np.clip(s.image / max(s.image.max(), 1e-6), 0, 1) * 255).astype(np.uint8)
        cv2.imwrite(str(d / f"{prefix}_{i:03d}.png"), img)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Training/ and Testing/ phantom PNGs (files: the workers read them by path); N_TWINS Testing
    files copy Training ones, and one Testing file is damaged beyond its header."""
    root = tmp_path_factory.mktemp("ray_data")
    train = make_phantoms(24, size=64, seed=1)
    _write_split(root, train.samples, "Training", "tr")
    _write_split(root, make_phantoms(N_TESTING, size=64, seed=2).samples, "Testing", "te")
    _write_split(root, train.samples[:N_TWINS], "Testing", "leak")
    victim = sorted((root / "Testing").rglob("te_*.png"))[0]
    data = bytearray(victim.read_bytes())
    at = data.index(b"IDAT") + 20
    data[at : at + 8] = b"\xff" * 8
    victim.write_bytes(bytes(data))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", size=48)


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="the optional extra tumorlens[ray] is not installed")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=256 * 1024**2)
    yield ray
    ray.shutdown()


def _verdict(summary: dict) -> list[tuple[str, str]]:
    return [(c["name"], c["status"]) for c in summary["verdict"]["checks"]]


def test_the_audit_on_ray_gives_the_in_process_audit_though_a_worker_dies(cluster, dataset, checkpoint, tmp_path,
                                                                          monkeypatch):
    """Two chunks (64 + 1 audited images) on two workers; the worker of the second chunk dies once.
    The input check runs on the workers too: in this process it would fail."""
    import pandas as pd

    from tumorlens.audit.checks import default_checks
    from tumorlens.audit.config import AuditConfig
    from tumorlens.audit.runner import run_audit
    from tumorlens.data.sources import open_dataset
    from tumorlens.models.loading import load_model

    opts = dict(methods=("gradcam",), compare_n=2, sanity_n=1, road_n=0, robustness_n=4, predicted_masks=False,
                progress=False)
    here = run_audit(load_model(str(checkpoint)), open_dataset(dataset), tmp_path / "here", AuditConfig(**opts))
    dies = DiesOnce(str(tmp_path / "died"))
    monkeypatch.setattr("tumorlens.inputcheck.check.check_samples", _not_here)
    on_ray = run_audit(load_model(str(checkpoint)), open_dataset(dataset), tmp_path / "ray",
                       AuditConfig(**opts, ray="auto", ray_workers=2), checks=default_checks() + [dies],
                       load_model=partial(load_model, str(checkpoint)))
    n = N_TESTING + N_TWINS - 1  # the damaged file is skipped on both
    assert (tmp_path / "died").exists()  # a worker did die ...
    assert dies.seen == list(range(n)) and on_ray["dies_once"]["images_seen"] == n  # ... and no image was lost or doubled
    assert dies.settings == {("1", 0)}  # the workers' runtime_env (cluster.worker_env), the restarted one's included
    assert on_ray["config"]["ray"] == "auto"
    assert on_ray["n_images"] == here["n_images"] == n
    assert on_ray["data"]["skipped_files"] == here["data"]["skipped_files"] == 1
    assert _verdict(on_ray) == _verdict(here)
    assert json.dumps(on_ray["leakage"], sort_keys=True) == json.dumps(here["leakage"], sort_keys=True)
    assert on_ray["classification"]["all"]["confusion_matrix"] == here["classification"]["all"]["confusion_matrix"]
    assert on_ray["classification"]["near_twins_in_training"] == here["classification"]["near_twins_in_training"] > 0
    checked_r, checked_h = on_ray["input_check"], here["input_check"]  # the phantoms look unlike brain MRI
    assert checked_r["checked"] == checked_h["checked"] == n and checked_r["flagged"] == checked_h["flagged"] > 0
    assert [f["path"] for f in checked_r["flagged_images"]] == [f["path"] for f in checked_h["flagged_images"]]
    np.testing.assert_allclose([f["score"] for f in checked_r["flagged_images"]],
                               [f["score"] for f in checked_h["flagged_images"]], rtol=1e-3)
    assert len(checked_r["gallery"]) == len(checked_h["gallery"]) > 0
    rob_r, rob_h = on_ray["robustness"]["shifts"], here["robustness"]["shifts"]
    assert [(s["name"], s["accuracy"]) for s in rob_r] == [(s["name"], s["accuracy"]) for s in rob_h]
    a, b = pd.read_csv(tmp_path / "here" / "gradcam_analysis.csv"), pd.read_csv(tmp_path / "ray" / "gradcam_analysis.csv")
    assert len(b) == n and list(a.columns) == list(b.columns) and list(a["path"]) == list(b["path"])
    for col in a.columns:  # every image's row: counts and classes equal, figures within float noise
        if a[col].dtype.kind == "f":
            np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), atol=1e-4, equal_nan=True, err_msg=col)
        else:
            assert list(b[col]) == list(a[col]), col


def _not_here(*args, **kwargs):
    raise AssertionError("with --ray the input check must run on the workers, not in the driver")


def test_the_data_check_on_ray_gives_the_in_process_check(cluster, dataset, monkeypatch):
    from tumorlens.data.checks import check_dataset
    from tumorlens.data.sources import open_dataset

    monkeypatch.chdir(dataset.parent)  # a relative path, as typed: the workers (started elsewhere) read it from here
    here = check_dataset(open_dataset(dataset.name), progress=False).to_dict(include_pairs=True)
    on_ray = check_dataset(open_dataset(dataset.name), progress=False, ray="auto", ray_workers=2).to_dict(include_pairs=True)
    here.pop("seconds"), on_ray.pop("seconds")
    assert here["skipped"] and here["n_duplicate_pairs"] >= N_TWINS  # the damaged file and the twins are found ...
    assert on_ray == here  # ... the same way: counts, sizes, channels, intensity, pairs, findings


@dataclass
class Seen(CheckResult):
    indices: list[int]

    def to_summary(self) -> dict:
        return {"dies_once": {"images_seen": len(self.indices)}}


class DiesOnce(Check):
    """A check whose worker process dies the first time it meets a chunk after the first (a marker
    file remembers across the restart), and which records which images reach `on_chunk` and the
    workers' process settings."""

    name = "dies_once"

    def __init__(self, marker: str):
        self.marker = marker

    def start(self, ctx):
        self.seen: list[int] = []
        self.settings: set[tuple[str | None, int]] = set()  # (MALLOC_ARENA_MAX, niceness) of the workers

    def map_chunk(self, ctx, chunk):
        if chunk.start > 0 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)  # the worker process dies, as on a lost machine
        return [r.index for r in chunk.records], (os.environ.get("MALLOC_ARENA_MAX"), os.nice(0))

    def on_chunk(self, ctx, done):
        indices, settings = done.parts[self.name]
        self.seen.extend(indices)
        self.settings.add(settings)

    def finish(self, ctx) -> Seen:
        return Seen(self.seen)


def test_a_missing_extra_is_a_clear_message(monkeypatch):
    from tumorlens.cluster import RayUnavailable, require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(RayUnavailable, match=r"pip install 'tumorlens\[ray\]'"):
        require_ray()


def test_the_workers_get_one_malloc_arena_and_the_callers_niceness(monkeypatch):
    """Ray Data calls the map function on a thread of the actor; with one glibc arena per thread the
    model passes' large blocks were mapped and unmapped every pass (benchmarks/RESULTS.md, bench_ray.py --chunk)."""
    from tumorlens.cluster import worker_env

    for k in ("MALLOC_ARENA_MAX", "TUMORLENS_MALLOC", "RAY_worker_niceness", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(k, raising=False)
    assert worker_env() == {"OMP_WAIT_POLICY": "PASSIVE", "RAY_worker_niceness": "0", "MALLOC_ARENA_MAX": "1"}
    monkeypatch.setenv("TUMORLENS_MALLOC", "system")  # glibc's defaults, as in this process
    assert "MALLOC_ARENA_MAX" not in worker_env() and worker_env()["TUMORLENS_MALLOC"] == "system"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("RAY_worker_niceness", "10")
    assert worker_env()["MALLOC_ARENA_MAX"] == "4" and worker_env()["RAY_worker_niceness"] == "10"


def test_without_ray_nothing_imports_it():
    probe = ("import sys, tumorlens.cli, tumorlens.audit.runner, tumorlens.audit.ray_pass, tumorlens.cluster\n"
             "from tumorlens.data.checks import check_dataset\n"
             "from tumorlens.data.synthetic import make_phantoms\n"
             "check_dataset(make_phantoms(8, size=32, seed=0), progress=False)\n"
             "assert 'ray' not in sys.modules, 'ray was imported'\n")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
