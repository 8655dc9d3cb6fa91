"""tumorlens keeps freed memory for reuse, so a model pass does not page-fault its tensors anew."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A 40 MB tensor (above glibc's largest mmap threshold, like a batch of 224 px activations),
# allocated and freed 16 times; prints the page faults of the last 6 rounds.
SCRIPT = """
import resource, torch
from tumorlens.runtime import configure_process
from tumorlens.memory import reuse_freed_memory
configure_process()  # what the command line and the service do at start-up
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.ones(10 * 2**20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del a
print(reuse_freed_memory(), sum(faults[-6:]))
"""


def _run(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "TUMORLENS_MALLOC"}
    if env_value is not None:
        env["TUMORLENS_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_a_freed_block_is_reused_without_new_page_faults():
    applied, faults = _run(None)
    assert applied == "True"
    assert faults < 500  # reused; fresh pages would be about 6 x 10,240 faults
    applied, faults = _run("system")  # the opt-out keeps glibc's behaviour, which faults every round
    assert applied == "False"
    assert faults > 30_000


# 400 MB touched and freed, then release_freed_memory(): prints the resident MB before and after.
RELEASE = """
import torch
from tumorlens.runtime import configure_process
from tumorlens.memory import release_freed_memory
configure_process()
def rss_mb():
    return next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmRSS"))
a = torch.ones(100 * 2**20)
del a
kept = rss_mb()
release_freed_memory()
print(kept, rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is Linux-only")
def test_freed_memory_is_handed_back_between_stages():
    """A long run (the audit) hands back what its last stage freed, instead of keeping every stage's peak."""
    env = {k: v for k, v in os.environ.items() if k != "TUMORLENS_MALLOC"}
    out = subprocess.run([sys.executable, "-c", RELEASE], env=env, capture_output=True, text=True, check=True).stdout
    kept, after = (int(x) for x in out.split())
    assert kept - after > 300  # the 400 MB block left the process


def test_import_tumorlens_changes_nothing_in_the_process():
    """A library user's process keeps its own OpenMP and malloc settings: importing tumorlens (and
    its model code) sets neither; the command line's start-up does."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "TUMORLENS_MALLOC")}
    code = ("import os, tumorlens, tumorlens.models.checkpoint, tumorlens.memory as m; "
            "print(os.environ.get('OMP_WAIT_POLICY'), m._applied); import tumorlens.cli; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "False", "PASSIVE"]
