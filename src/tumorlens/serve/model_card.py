"""GET /v1/model: what the checkpoint says about itself plus its model card, if one exists."""

from __future__ import annotations

from pathlib import Path

from tumorlens.models.checkpoint import TumorModel
from tumorlens.serialization import jsonable


def find_card(model_path: Path, explicit: Path | None = None) -> Path | None:
    """The card the operator named, else `<checkpoint>.md`, else MODEL_CARD.md beside the checkpoint."""
    for candidate in (explicit, model_path.with_suffix(".md"), model_path.parent / "MODEL_CARD.md"):
        if candidate is not None and Path(candidate).is_file():
            return Path(candidate)
    return None


def model_description(model: TumorModel, model_path: Path, card_path: Path | None) -> dict:
    return {
        "name": model.arch,
        "version": model.version,
        "classes": list(model.classes),
        "input": jsonable(model.recipe.to_dict()),
        "temperature": model.temperature,
        "metrics": jsonable(model.metrics),
        "provenance": jsonable(model.provenance),
        "checkpoint": model_path.name,
        "card_markdown": card_path.read_text(encoding="utf-8", errors="replace") if card_path else None,
    }
