"""GET /v1/model: the public card of the served model, what the checkpoint says about itself plus
its model card text, with everything that is for the operator and the audit only left out.

Left out: paths on the machine (the training data's, the run's, the configuration's) and the
perceptual hashes of the training images (5,708 of them for the default model: with those a caller
could test whether an image was in the training set). They stay in the checkpoint, where the audit
reads them.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath

from tumorlens.models.checkpoint import TumorModel
from tumorlens.serialization import jsonable

# Provenance facts a user of the model may see: how it was trained, not from where or on what files.
PUBLIC_PROVENANCE = ("data_kind", "train_split", "split_method", "n_train", "n_val", "skipped_files", "epochs_run",
                     "train_seconds", "versions", "created")
# A path in running text: absolute (/a/b, C:\a) or relative with a folder (../a/b, runs/x/y.pt).
_PATH = re.compile(r"(?<![\w:/.-])(?:[A-Za-z]:\\|\.{1,2}/|/)?(?:[\w.-]+[/\\])+[\w.-]+")


def find_card(model_path: Path, explicit: Path | None = None) -> Path | None:
    """The card the operator named, else `<checkpoint>.md`, else MODEL_CARD.md beside the checkpoint."""
    for candidate in (explicit, model_path.with_suffix(".md"), model_path.parent / "MODEL_CARD.md"):
        if candidate is not None and Path(candidate).is_file():
            return Path(candidate)
    return None


def strip_paths(text: str) -> str:
    """Every path in the text replaced by its last part (`/srv/data/brain-tumor-mri` -> `brain-tumor-mri`)."""
    return _PATH.sub(lambda m: PurePath(m.group(0).replace("\\", "/")).name, text)


def _looks_like_path(value) -> bool:
    return isinstance(value, str) and ("/" in value or "\\" in value)


def public_provenance(provenance: dict) -> dict:
    out = {k: jsonable(provenance[k]) for k in PUBLIC_PROVENANCE if k in provenance}
    if _looks_like_path(provenance.get("data")):
        out["dataset"] = PurePath(provenance["data"]).name
    config = provenance.get("config")
    if isinstance(config, dict):  # the recipe's settings, without its paths
        out["config"] = {k: jsonable(v) for k, v in config.items()
                         if not _looks_like_path(v) and not isinstance(v, (dict, list, tuple))}
    return out


def model_description(model: TumorModel, model_path: Path, card_path: Path | None) -> dict:
    """The public card (see the module docstring); schemas.ModelCard is its shape."""
    card = card_path.read_text(encoding="utf-8", errors="replace") if card_path else None
    return {
        "name": model.arch,
        "version": model.version,
        "classes": list(model.classes),
        "input": jsonable(model.recipe.to_dict()),
        "temperature": model.temperature,
        "metrics": jsonable(model.metrics),
        "provenance": public_provenance(model.provenance or {}),
        "checkpoint": model_path.name,
        "card_markdown": strip_paths(card) if card is not None else None,
    }
