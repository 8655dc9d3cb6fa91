"""Process settings the command line and the service apply at start-up (never on `import tumorlens`).

- OMP_WAIT_POLICY=PASSIVE (unless set): PyTorch's OpenMP worker threads spin while they wait for
  work. On a small or shared CPU that spinning takes the cores the real work needs: the Kaggle audit
  used 299 CPU s with spinning and 137 with passive waiting (benchmarks/RESULTS.md). It must be set
  before torch loads.
- freed memory kept for reuse (memory.py): model passes at 224 px otherwise spend about as much CPU
  in page faults as in the model. TUMORLENS_MALLOC=system keeps glibc's defaults.
"""

from __future__ import annotations

import os

from tumorlens.memory import reuse_freed_memory


def configure_process() -> None:
    """Apply both settings; call before torch is imported for the OpenMP one to take effect."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    reuse_freed_memory()
