"""tumorlens: brain-tumor MRI classification that shows whether its decisions are clinically meaningful."""

import os

from tumorlens.memory import reuse_freed_memory

# PyTorch's OpenMP worker threads spin while they wait for work. On a small or shared CPU that
# spinning takes the cores the real work needs: the Kaggle audit used 299 CPU s with spinning and
# 137 with passive waiting (benchmarks/RESULTS.md). Must be set before torch loads; users may override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Model passes at 224 px otherwise spend about as much CPU in page faults as in the model (memory.py).
reuse_freed_memory()

__version__ = "0.1.0"
