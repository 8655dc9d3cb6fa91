"""What ships inside the package: the default model, its model card, and sample slices for the demo."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def default_model_path() -> Path:
    path = ASSETS / "default_model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the default model is missing from the package ({path}); reinstall tumorlens")
    return path


def model_card_path() -> Path:
    return ASSETS / "MODEL_CARD.md"


def sample_dir(kind: str = "kaggle") -> Path:
    """Bundled sample slices: 'kaggle' (class folders, 8 Testing slices per class) or
    'figshare' (12 slices with tumor masks and patient ids, converted-folder layout)."""
    path = ASSETS / "samples" / kind
    if not path.is_dir():
        raise FileNotFoundError(f"no bundled samples named {kind!r} ({path})")
    return path
