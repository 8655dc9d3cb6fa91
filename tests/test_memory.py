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
import tumorlens
from tumorlens.memory import reuse_freed_memory
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
