"""The explainer registry: one `Method` object per explainer, carrying everything about it (library
class, family, parameters and defaults, passes per image, gradients, heatmap style, batching,
service speed, display order). Every list of methods elsewhere (CAM methods, the service's fast
and one-pass methods, figure order, help text) is derived from here; a method is added by adding
one entry below and, for a new kind of map, one small implementation class or runner.

Kept free of torch imports: the command line imports it to build its help text.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from tumorlens.errors import TumorlensError


class ExplainError(TumorlensError):
    """Bad input to an explainer (method, layer, image shape, target, parameter); the message says
    what was given and what was expected."""


@dataclass(frozen=True)
class Passes:
    """Model passes per image: forwards without gradient, and forward+backward pairs."""

    forward: float = 0.0
    forward_backward: float = 0.0


# -- passes per image, by each method's definition (what an ideal implementation pays) ------------
def _one_forward_backward(p, h, w, channels) -> Passes:
    return Passes(forward_backward=1)


def _one_forward(p, h, w, channels) -> Passes:
    return Passes(forward=1)


def _per_channel(p, h, w, channels) -> Passes:  # Score-CAM: one forward per channel of the layer
    return Passes(forward=1 + channels)


def _forward_backward_per(key: str) -> Callable[..., Passes]:
    return lambda p, h, w, channels: Passes(forward_backward=int(p[key]))


def _forward_per(key: str) -> Callable[..., Passes]:
    return lambda p, h, w, channels: Passes(forward=int(p[key]))


def _occlusion_passes(p, h, w, channels) -> Passes:
    win, stride = occlusion_geometry(h, w, p["window"], p["stride"])
    return Passes(forward=1 + occlusion_positions(h, w, win, stride))


@dataclass(frozen=True)
class Method:
    """One explainer and everything the code needs to know about it.

    family: "cam" (pytorch-grad-cam; needs a convolutional target layer) or "captum".
    implementation: "module:attribute", imported on first use: a pytorch-grad-cam subclass for
        CAM methods (tumorlens.explain.cam), a runner function for Captum methods
        (tumorlens.explain.attribution).
    library_name: the library class it runs. defaults: parameters and their defaults (None:
        derived from the input at call time, see the description).
    passes: (params, height, width, layer channels) -> Passes per image.
    needs_gradients: runs backward passes (the model's weights are frozen either way).
    heatmap_style: (sign, scale) for heatmaps.attribution_heatmaps; None for CAM methods, whose
        maps the library already scales to [0, 1].
    one_image_at_a_time: explains image by image (its passes carry perturbed copies of one image:
        Score-CAM's channel masks, LIME's and KernelSHAP's surrogate samples).
    one_pass: makes exactly one forward pass over the images it explains, so that pass's logits
        are the prediction (the service skips a separate inference pass).
    fast: cheap enough (about one model pass per image) to answer a web request on a CPU.
    order: position in comparison figures (CAM first, then gradient, then perturbation methods,
        baselines last).
    class_sensitive: the map depends on the target class (EigenCAM's and random's do not).
    baseline: a reference any real method must beat, not an explanation (reports mark it).
    layers: for CAM methods that choose their own stages, (network, input side) -> layer names
        (an explicit layer= still wins); None: the architecture's last convolutional stage.
    metadata: measured facts about the method's maps that reports print beside them.
    """

    name: str
    family: str
    implementation: str
    library_name: str
    description: str
    passes: Callable[..., Passes]
    needs_gradients: bool
    order: int
    defaults: Mapping[str, Any] = field(default_factory=dict)
    heatmap_style: tuple[str, str] | None = None
    one_image_at_a_time: bool = False
    one_pass: bool = False
    fast: bool = False
    class_sensitive: bool = True
    baseline: bool = False
    aliases: tuple[str, ...] = ()
    layers: Callable[..., list[str]] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only views: a frozen object whose dicts could be edited in place would not be frozen.
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def load(self):
        """The implementation object (CAM class or Captum runner)."""
        module, attr = self.implementation.split(":")
        return getattr(importlib.import_module(module), attr)

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated with the caller's values; an unknown name is an error, so a typo
        cannot silently fall back to a default."""
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            takes = ", ".join(self.defaults) or "no parameters"
            raise ExplainError(f"unknown parameter(s) {unknown} for {self.name}; it takes: {takes}")
        return {**self.defaults, **params}

    def passes_per_image(self, params: Mapping[str, Any], height: int, width: int, layer_channels: int = 0) -> Passes:
        p = self.resolve_params({k: v for k, v in params.items() if k in self.defaults})
        return self.passes(p, height, width, layer_channels)


def _stride16_stage(net, size: int) -> list[str]:
    from tumorlens.explain.localisation import stage_layers

    names = stage_layers(net, size, [16])
    if not names:
        raise ExplainError(f"{type(net).__name__} has no convolutional stage with spatial output at {size} px")
    return names


_SMOOTH = {"eigen_smooth": False}
_SURROGATE = {"samples": 200, "n_segments": 50, "compactness": 0.1, "baseline": "black", "seed": None}
_CAM = "tumorlens.explain.cam"
_CAPTUM = "tumorlens.explain.attribution"

# Parameters set to None are derived from the input at call time (documented per method); a seed
# of None leaves the sampling methods (gradshap, lime, kernelshap, random) to the global generators.
_REGISTRY = [
    Method("gradcam", "cam", f"{_CAM}:GradCAM", "GradCAM", "Grad-CAM", _one_forward_backward, True, 0,
           _SMOOTH, one_pass=True, fast=True, aliases=("grad-cam", "grad_cam")),
    Method("gradcam++", "cam", f"{_CAM}:GradCAMPlusPlus", "GradCAMPlusPlus", "Grad-CAM++", _one_forward_backward,
           True, 1, _SMOOTH, one_pass=True, fast=True,
           aliases=("gradcampp", "gradcamplusplus", "grad-cam++")),
    Method("hirescam", "cam", f"{_CAM}:HiResCAM", "HiResCAM", "HiResCAM", _one_forward_backward, True, 2, _SMOOTH,
           one_pass=True, fast=True, aliases=("hires-cam",)),
    Method("layercam", "cam", f"{_CAM}:LayerCAM", "LayerCAM", "LayerCAM", _one_forward_backward, True, 3, _SMOOTH,
           one_pass=True, fast=True, aliases=("layer-cam",)),
    Method("scorecam", "cam", f"{_CAM}:ScoreCAM", "ScoreCAM",
           "Score-CAM (one forward per channel of the target layer; channel_batch channel-masked images per "
           "forward, default batch_size)", _per_channel, False, 4, {"channel_batch": None}, fast=True,
           one_image_at_a_time=True,
           aliases=("score-cam",)),
    Method("eigencam", "cam", f"{_CAM}:EigenCAM", "EigenCAM",
           "EigenCAM (first principal component of the layer; ignores the target)", _one_forward, False, 5,
           one_pass=True, fast=True, class_sensitive=False, aliases=("eigen-cam",)),
    Method("saliency", "captum", f"{_CAPTUM}:saliency", "Saliency", "absolute input gradient",
           _one_forward_backward, True, 6, heatmap_style=("absolute", "percentile"), fast=True),
    Method("ig", "captum", f"{_CAPTUM}:integrated_gradients", "IntegratedGradients",
           "Integrated Gradients from a black image", _forward_backward_per("steps"), True, 7,
           {"steps": 32, "baseline": "black"}, heatmap_style=("positive", "percentile"), fast=True,
           aliases=("integrated_gradients", "integratedgradients")),
    Method("gradshap", "captum", f"{_CAPTUM}:gradient_shap", "GradientShap",
           "GradientSHAP (expected gradients; noise stdev in model-input units)", _forward_backward_per("samples"),
           True, 8, {"samples": 16, "stdev": 0.1, "baseline": "black", "seed": None},
           heatmap_style=("positive", "percentile"), fast=True, aliases=("gradientshap", "gradient_shap", "shap")),
    Method("occlusion", "captum", f"{_CAPTUM}:occlusion", "Occlusion",
           "Occlusion with a black square (window default: side/8, stride: window/2)", _occlusion_passes, False, 9,
           {"window": None, "stride": None, "baseline": "black"}, heatmap_style=("positive", "max")),
    Method("lime", "captum", f"{_CAPTUM}:lime", "Lime", "LIME over SLIC superpixels", _forward_per("samples"), False,
           10, _SURROGATE, heatmap_style=("positive", "max"), one_image_at_a_time=True),
    Method("kernelshap", "captum", f"{_CAPTUM}:kernel_shap", "KernelShap", "KernelSHAP over SLIC superpixels",
           _forward_per("samples"), False, 11, _SURROGATE, heatmap_style=("positive", "max"), one_image_at_a_time=True,
           aliases=("kernel_shap",)),
    # The localisation map of the audit's figures, chosen on the blob control by measurement
    # (benchmarks/bench_localisation.py, RESULTS.md): HiResCAM at the stage of output stride 16
    # (14 x 14 at 224 px for Lite0) put its peak on the blob in 0.938 of 32 control slices, against
    # 0.062 for Grad-CAM at the last stage (7 x 7); LayerCAM there 0.875, LayerCAM fused over
    # strides 8-32 0.906, Grad-CAM at stride 16 0.594.
    Method("localise", "cam", f"{_CAM}:HiResCAM", "HiResCAM",
           "HiResCAM at the stage of output stride 16 (14 x 14 at 224 px): the localisation map, chosen "
           "on the blob control", _one_forward_backward, True, 12, one_pass=True, fast=True,
           aliases=("localize", "localisation"), layers=_stride16_stage,
           metadata={"localisation": True, "stride": 16,
                     "control": "benchmarks/bench_localisation.py: shipped Lite0, last stage retrained on blob "
                                "phantoms (224 px, blob sigma 3.5 px), 32 blob slices",
                     "control_pointing_game": 0.938, "control_energy": 0.058,
                     "control_pointing_game_gradcam": 0.062}),
    Method("random", "cam", f"{_CAM}:RandomCAM", "RandomCAM",
           "random channel weights: the baseline any real method must beat", _one_forward_backward, True, 13,
           {"seed": None}, fast=True, class_sensitive=False, baseline=True, aliases=("randomcam",)),
]

REGISTRY: Mapping[str, Method] = MappingProxyType({m.name: m for m in _REGISTRY})
SPECS = REGISTRY  # the name used before the registry held whole methods
MethodSpec = Method

# Derived lists: never written out by hand elsewhere.
METHODS: tuple[str, ...] = tuple(REGISTRY)
CAM_METHODS: tuple[str, ...] = tuple(m.name for m in _REGISTRY if m.family == "cam")
FAST_METHODS: tuple[str, ...] = tuple(m.name for m in _REGISTRY if m.fast)
ONE_PASS_METHODS: frozenset[str] = frozenset(m.name for m in _REGISTRY if m.one_pass)
BASELINE_METHODS: tuple[str, ...] = tuple(m.name for m in _REGISTRY if m.baseline)
DEFAULT_METHOD: str = "gradcam"  # what `explain`, the CLI, the service and the audit use unless told
assert DEFAULT_METHOD in REGISTRY
# Spellings users of other tools type; each maps to one canonical name.
ALIASES: Mapping[str, str] = MappingProxyType({a: m.name for m in _REGISTRY for a in m.aliases})
assert len(ALIASES) == sum(len(m.aliases) for m in _REGISTRY), "an alias names two methods"


LOCALISATION_METHOD: str = next(m.name for m in _REGISTRY if m.metadata.get("localisation"))


def map_resolution(method: str, size: int) -> int | None:
    """Cells per side of a method's map at input side `size`: size / its stage's stride (from the
    method's metadata); None for maps without a stage (pixel-wise or per window)."""
    m = method_spec(method)
    stride = m.metadata.get("stride")
    if stride is None:
        return None
    return max(1, int(round(size / stride)))


def localisation_note(size: int) -> str:
    """What every localisation figure states beside it: the map, its resolution, its control score."""
    m = REGISTRY[LOCALISATION_METHOD]
    side = map_resolution(m.name, size)
    return (f"{m.library_name} map, {side} x {side} at {size} px; pointing game "
            f"{m.metadata['control_pointing_game']:.2f} on the blob control (Grad-CAM at the last stage: "
            f"{m.metadata['control_pointing_game_gradcam']:.2f})")


def method_spec(name: str) -> Method:
    """The registered method for a name or alias (case and surrounding spaces ignored)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise ExplainError(f"unknown explain method {name!r}; choose one of: {', '.join(METHODS)}")
    return REGISTRY[key]


get_method = method_spec


def resolve_params(spec: Method, params: dict[str, Any]) -> dict[str, Any]:
    return spec.resolve_params(params)


def gallery_order(methods) -> list[str]:
    """The methods in display order (registry order; unknown names last, as given)."""
    def key(m):
        return REGISTRY[m].order if m in REGISTRY else len(REGISTRY)

    return sorted(methods, key=key)


def methods_help() -> str:
    """The method list for help texts, in display order."""
    return ", ".join(gallery_order(METHODS))


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
    return method_spec(method).passes_per_image(params, height, width, layer_channels)


# The per-image map of a model whose layers cannot be hooked (TorchScript, a black box): occlusion
# needs forward passes only, so it serves every model.
GRADIENT_FREE_PRIMARY = "occlusion"


def primary_method(model) -> str:
    """The per-image map this model can serve: the localisation map (a CAM method) where the model
    has a CAM layer, else occlusion."""
    return LOCALISATION_METHOD if model.capabilities["cam"] else GRADIENT_FREE_PRIMARY


def method_unavailable(model, method: str) -> str | None:
    """Why `model` cannot serve explainer `method`, or None when it can."""
    spec = method_spec(method)
    caps = model.capabilities
    if spec.family == "cam" and not caps["cam"]:
        return "needs a CAM layer the model cannot expose"
    if spec.needs_gradients and not caps["gradients"]:
        return "needs gradients (the model is a black box)"
    return None
