"""The explainer registry: every method's name, library, parameters with their defaults, and how
many model passes it costs per image (the benchmark's yardstick, and a user's cost estimate)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tumorlens.errors import TumorlensError


class ExplainError(TumorlensError):
    """Bad input to an explainer (method, layer, image shape, target, parameter); the message says
    what was given and what was expected."""


@dataclass(frozen=True)
class Passes:
    """Model passes per image: forwards without gradient, and forward+backward pairs."""

    forward: float = 0.0
    forward_backward: float = 0.0


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str  # "cam" (pytorch-grad-cam, needs a target layer) or "captum"
    library_name: str  # the class it adapts
    defaults: dict[str, Any] = field(default_factory=dict)
    class_sensitive: bool = True  # False: the map ignores the target class (EigenCAM, random)
    description: str = ""


# Parameters set to None are derived from the input at call time (documented per method); a seed
# of None leaves the sampling methods (gradshap, lime, kernelshap, random) to the global generators.
_SPECS = [
    MethodSpec("gradcam", "cam", "GradCAM", {"eigen_smooth": False}, description="Grad-CAM"),
    MethodSpec("gradcam++", "cam", "GradCAMPlusPlus", {"eigen_smooth": False}, description="Grad-CAM++"),
    MethodSpec("hirescam", "cam", "HiResCAM", {"eigen_smooth": False}, description="HiResCAM"),
    MethodSpec("scorecam", "cam", "ScoreCAM", {"channel_batch": None},
               description="Score-CAM (one forward per channel of the target layer; channel_batch "
                           "channel-masked images per forward, default batch_size)"),
    MethodSpec("layercam", "cam", "LayerCAM", {"eigen_smooth": False}, description="LayerCAM"),
    MethodSpec("eigencam", "cam", "EigenCAM", {}, class_sensitive=False,
               description="EigenCAM (first principal component of the layer; ignores the target)"),
    MethodSpec("random", "cam", "RandomCAM", {"seed": None}, class_sensitive=False,
               description="random channel weights: the baseline any real method must beat"),
    MethodSpec("ig", "captum", "IntegratedGradients", {"steps": 32, "baseline": "black"},
               description="Integrated Gradients from a black image"),
    MethodSpec("gradshap", "captum", "GradientShap", {"samples": 16, "stdev": 0.1, "baseline": "black", "seed": None},
               description="GradientSHAP (expected gradients; noise stdev in model-input units)"),
    MethodSpec("occlusion", "captum", "Occlusion", {"window": None, "stride": None, "baseline": "black"},
               description="Occlusion with a black square (window default: side/8, stride: window/2)"),
    MethodSpec("lime", "captum", "Lime",
               {"samples": 200, "n_segments": 50, "compactness": 0.1, "baseline": "black", "seed": None},
               description="LIME over SLIC superpixels"),
    MethodSpec("kernelshap", "captum", "KernelShap",
               {"samples": 200, "n_segments": 50, "compactness": 0.1, "baseline": "black", "seed": None},
               description="KernelSHAP over SLIC superpixels"),
    MethodSpec("saliency", "captum", "Saliency", {}, description="absolute input gradient"),
]

SPECS: dict[str, MethodSpec] = {s.name: s for s in _SPECS}
METHODS: tuple[str, ...] = tuple(SPECS)
CAM_METHODS: tuple[str, ...] = tuple(s.name for s in _SPECS if s.family == "cam")

# Spellings users of other tools type; each maps to one canonical name.
ALIASES = {
    "grad-cam": "gradcam", "grad_cam": "gradcam", "gradcampp": "gradcam++", "gradcamplusplus": "gradcam++",
    "grad-cam++": "gradcam++", "score-cam": "scorecam", "layer-cam": "layercam", "eigen-cam": "eigencam",
    "hires-cam": "hirescam", "randomcam": "random", "integrated_gradients": "ig", "integratedgradients": "ig",
    "gradientshap": "gradshap", "gradient_shap": "gradshap", "shap": "gradshap", "kernel_shap": "kernelshap",
}


def method_spec(name: str) -> MethodSpec:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in SPECS:
        raise ExplainError(f"unknown explain method {name!r}; choose one of: {', '.join(METHODS)}")
    return SPECS[key]


def resolve_params(spec: MethodSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults updated with the caller's values; an unknown name is an error, so a
    typo cannot silently fall back to a default."""
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        takes = ", ".join(spec.defaults) or "no parameters"
        raise ExplainError(f"unknown parameter(s) {unknown} for {spec.name}; it takes: {takes}")
    return {**spec.defaults, **params}


def occlusion_geometry(height: int, width: int, window: int | None, stride: int | None) -> tuple[int, int]:
    """Default window: an eighth of the shorter side (at least 4 px), stride half a window."""
    side = min(height, width)
    w = int(window) if window is not None else max(4, int(round(side / 8)))
    s = int(stride) if stride is not None else max(1, w // 2)
    if not 1 <= w <= side:
        raise ExplainError(f"occlusion window {w} must lie between 1 and the image side {side}")
    if not 1 <= s <= w:
        raise ExplainError(f"occlusion stride {s} must lie between 1 and the window {w}")
    return w, s


def occlusion_positions(height: int, width: int, window: int, stride: int) -> int:
    # Captum's count: ceil((side - window) / stride) + 1 positions along each axis.
    return (math.ceil((height - window) / stride) + 1) * (math.ceil((width - window) / stride) + 1)


def passes_per_image(method: str, params: dict[str, Any], height: int, width: int, layer_channels: int = 0) -> Passes:
    """The model passes a method needs for one image, by its definition (what an ideal
    implementation would pay; explain's overhead is measured against this)."""
    spec = method_spec(method)
    p = resolve_params(spec, {k: v for k, v in params.items() if k in spec.defaults})
    name = spec.name
    if name in ("gradcam", "gradcam++", "hirescam", "layercam", "random", "saliency"):
        return Passes(forward_backward=1)
    if name == "eigencam":
        return Passes(forward=1)
    if name == "scorecam":
        return Passes(forward=1 + layer_channels)
    if name == "ig":
        return Passes(forward_backward=int(p["steps"]))
    if name == "gradshap":
        return Passes(forward_backward=int(p["samples"]))
    if name == "occlusion":
        w, s = occlusion_geometry(height, width, p["window"], p["stride"])
        return Passes(forward=1 + occlusion_positions(height, width, w, s))
    if name in ("lime", "kernelshap"):
        return Passes(forward=int(p["samples"]))
    raise AssertionError(name)  # every registered method is listed above
