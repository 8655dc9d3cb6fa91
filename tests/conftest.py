"""Shared test set-up: offline, few threads, and a marker for tests that need ../shared/data."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Thread counts: the session runs torch on 2 threads and the tests that train small networks on 1
# (the `training_threads` fixture; two threads contend on a busy 2-core machine). A result must not
# hang on either: .ci/run's second pass sets TUMORLENS_TEST_THREADS=swap (1 for the session, 2 for
# training) together with restricted CPU kernels, on the tests marked `pins_numbers` below.
SWAP_THREADS = os.environ.get("TUMORLENS_TEST_THREADS", "") == "swap"
SESSION_THREADS, TRAINING_THREADS = (1, 2) if SWAP_THREADS else (2, 1)
torch.set_num_threads(SESSION_THREADS)

# Test modules that train a model or compare computed numbers with stored ones: what a change of
# processor (CPU kernels) or thread count can move. .ci/run runs them a second time with
# ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 and the thread counts
# swapped (`pytest -m pins_numbers`); both passes must be green (issue 25).
PINS_NUMBERS = {
    "test_audit_demo_reference.py", "test_audit_planted_shortcut.py", "test_audit_proves_itself.py",
    "test_explain_reference.py", "test_explain_blob.py", "test_explain_methods.py", "test_training.py",
    "test_training_robust.py", "test_training_tumor_removal.py", "test_segmenter.py",
    "test_model_formats.py", "test_model_keras.py", "test_input_check.py",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "pins_numbers: trains a model or pins computed numbers (tests/conftest.py "
                                       "PINS_NUMBERS); .ci/run repeats these with restricted CPU kernels")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KAGGLE = SHARED_DATA / "brain-tumor-mri"
FIGSHARE = SHARED_DATA / "figshare-brain-tumor"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in PINS_NUMBERS:
            item.add_marker(pytest.mark.pins_numbers)
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared data folder {SHARED_DATA} is missing")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def kaggle_root() -> Path:
    return KAGGLE


@pytest.fixture
def figshare_root() -> Path:
    return FIGSHARE


@pytest.fixture(scope="module")
def training_threads():
    """torch on TRAINING_THREADS threads for a module that trains (1; 2 in the swapped pass)."""
    before = torch.get_num_threads()
    torch.set_num_threads(TRAINING_THREADS)
    yield TRAINING_THREADS
    torch.set_num_threads(before)
