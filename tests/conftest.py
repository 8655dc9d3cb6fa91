"""Shared test set-up: offline, few threads, and a marker for tests that need ../shared/data."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KAGGLE = SHARED_DATA / "brain-tumor-mri"
FIGSHARE = SHARED_DATA / "figshare-brain-tumor"


def pytest_collection_modifyitems(config, items):
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
