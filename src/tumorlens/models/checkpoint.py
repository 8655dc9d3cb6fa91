"""A checkpoint is one file: weights, architecture, classes, preprocessing recipe, calibration
temperature, training provenance and metrics. `load_model(path)` is all any caller needs."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.errors import TumorlensError
from tumorlens.models.registry import build_model
from tumorlens.models.softmax import temperature_softmax

FORMAT = "tumorlens-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(TumorlensError):
    """A file that is not a usable tumorlens checkpoint; the message says why."""


@dataclass
class TumorModel:
    """The one model interface every consumer (audit checks, explainers, evaluate, predict, serve)
    goes through: a network that takes (N, 1, S, S) images preprocessed by `recipe` and returns class
    logits, its classes in output order, and what it can do beyond probabilities (`capabilities`).

    A tumorlens checkpoint fills it directly; a foreign model (state dict, TorchScript, ONNX, Keras,
    a plain function; models/loading.py) is wrapped so that it takes the same input (models/spec_input.py)."""

    net: nn.Module
    arch: str
    classes: list[str]
    recipe: PreprocessRecipe
    temperature: float = 1.0
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    # what a foreign model can serve: gradients flow through it; its layers can be hooked (CAM)
    gradients: bool = True
    hookable: bool = True
    cam_layer: str | None = None  # the CAM layer in `net`; None: the registry's for `arch`
    source: dict[str, Any] = field(default_factory=dict)  # format, spec, notes (foreign models)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def target_layer(self) -> str | None:
        """Where CAM methods look: the declared or found layer, else the registry architecture's."""
        if not self.hookable:
            return None
        if self.cam_layer is not None:
            return self.cam_layer
        from tumorlens.models.registry import ARCHITECTURES

        return ARCHITECTURES[self.arch].target_layer if self.arch in ARCHITECTURES else None

    @property
    def capabilities(self) -> dict[str, bool]:
        """What the audit's checks may ask of this model beyond probabilities."""
        has_weights = any(True for _ in self.net.parameters())
        return {
            "gradients": self.gradients,
            "cam": self.target_layer is not None,
            "randomise": self.gradients and self.hookable and has_weights,
            "training_hashes": bool(self.provenance.get("train_phash")),
        }

    def prepare(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Raw 2-D images -> (N, 1, S, S) float tensor, preprocessed by this model's recipe."""
        return torch.from_numpy(self.recipe.batch(images))

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        self.net.eval()
        outs = [self.net(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.num_classes)

    def probabilities(self, x: torch.Tensor, batch_size: int = 64, calibrated: bool = True) -> np.ndarray:
        """Class probabilities for preprocessed input; temperature-scaled unless calibrated=False."""
        t = self.temperature if calibrated else 1.0
        return temperature_softmax(self.logits(x, batch_size), t)

    def predict_images(self, images: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Raw 2-D images -> calibrated probabilities (N, C)."""
        return self.probabilities(self.prepare(images), batch_size)


def save_checkpoint(
    path: str | Path,
    net: nn.Module,
    arch: str,
    classes: Sequence[str],
    recipe: PreprocessRecipe,
    temperature: float = 1.0,
    provenance: dict | None = None,
    metrics: dict | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "classes": list(classes),
        "recipe": recipe.to_dict(),
        "temperature": float(temperature),
        "provenance": provenance or {},
        "metrics": metrics or {},
        "state_dict": state,
    }
    return _save_atomically(payload, path)


def _save_atomically(payload: dict, path: Path) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind
    return path


def add_to_checkpoint(path: str | Path, key: str, value) -> Path:
    """Store plain data (e.g. the monitoring reference profile) under a new top-level key of an existing
    checkpoint; loaders that do not know the key ignore it."""
    path = Path(path)
    payload = read_checkpoint(path)
    payload[key] = value
    return _save_atomically(payload, path)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty: {path}")
    try:
        # weights_only: a checkpoint is data, never code to run. TorchVersion is a plain str subclass.
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path} is not a readable tumorlens checkpoint (damaged or another format): {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tumorlens checkpoint (no '{FORMAT}' header)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer tumorlens (format {payload['format_version']})")
    return payload


def load_model(path: str | Path) -> TumorModel:
    path = Path(path)
    payload = read_checkpoint(path)
    classes = list(payload["classes"])
    net = build_model(payload["arch"], len(classes))
    try:
        net.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{path}: weights do not fit architecture {payload['arch']!r} with {len(classes)} classes ({first})"
        ) from None
    # channels_last doubles CPU inference speed for these convnets (measured: Lite0 at 160 px,
    # batch 64, 12 -> 23 images/s) and changes no result.
    net = net.to(memory_format=torch.channels_last).eval()
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return TumorModel(
        net=net,
        arch=payload["arch"],
        classes=classes,
        recipe=PreprocessRecipe.from_dict(payload["recipe"]),
        temperature=float(payload.get("temperature", 1.0)),
        provenance=payload.get("provenance", {}),
        metrics=payload.get("metrics", {}),
        version=f"{payload['arch']}-{version}",
    )
