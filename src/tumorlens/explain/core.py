"""explain(): every attribution method behind one call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tumorlens.explain.methods import DEFAULT_METHOD, ExplainError, method_spec
from tumorlens.explain.model_access import (
    ChannelsLast,
    check_images,
    check_targets,
    explaining,
    find_layer,
    model_view,
    target_layer_name,
    to_channels_last,
)

__all__ = ["explain", "Explanation"]


@dataclass
class Explanation:
    """heatmaps: float32 (N, H, W) in [0, 1] at the input size, high = evidence for the target.
    raw: the method's own maps before normalising (signed attributions for Captum methods, the
    library's CAM for CAM methods). targets: the class explained per image. layer: the CAM layer
    (several joined by "+")."""

    heatmaps: np.ndarray
    raw: np.ndarray | None
    targets: np.ndarray
    method: str
    layer: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    input_checks: list | None = None  # tumorlens.inputcheck verdicts, where the caller ran the check

    def __len__(self) -> int:
        return len(self.heatmaps)


def explain(model, images, method: str = DEFAULT_METHOD, targets=None, batch_size: int = 32,
            layer: str | None = None, *, arch: str | None = None, progress: bool = False, **params) -> Explanation:
    """Explain a model's decisions on a batch of preprocessed images.

    The network is put in eval mode with frozen weights for the call and restored afterwards; it
    is converted to channels-last in place once (same numbers, faster on CPU). CAM methods hook
    the network during the call only, so calls on one network must not run concurrently (the
    service gives each model thread its own replica); calls on different networks may.

    Args:
        model: a TumorModel (tumorlens.models.checkpoint.load_model), or an nn.Module with its
            architecture name, as (net, "resnet18") or with arch=.
        images: (N, 1, H, W) float tensor or array (or (N, H, W)), already preprocessed
            (TumorModel.prepare).
        method: a registered method name or alias (METHODS; tumorlens.explain.methods.REGISTRY
            describes each). Default: Grad-CAM.
        targets: None (each image's predicted class), one class for all images, or one per image;
            class indices, or class names when the model carries them.
        batch_size: images per model pass; perturbation methods fill each pass with this many
            perturbed images.
        layer: dotted module name overriding the CAM layer (CAM methods; for other methods it is
            only checked to exist); several joined by "+" give the mean of their maps.
        arch: architecture name of a bare nn.Module.
        progress: show a progress bar.
        **params: the method's own settings (METHOD_PARAMS lists them with their defaults); an
            unknown name is an error.

    Returns:
        Explanation: heatmaps (N, H, W) float32 in [0, 1] at the input size, raw maps, the class
        explained per image, the method's canonical name, the CAM layer(s) and the parameters used.

    Raises:
        ExplainError: a bad method, parameter, layer, image shape or target, or input the network
            cannot run on; the message says what was given and what was expected.
    """
    spec = method_spec(method)
    p = spec.resolve_params(params)
    if int(batch_size) < 1:
        raise ExplainError(f"batch_size must be at least 1; got {batch_size}")
    batch_size = int(batch_size)
    view = model_view(model, arch)
    x = check_images(images, view)
    t = check_targets(targets, len(x), view)
    n, _, h, w = x.shape

    layer_name = None
    if spec.family == "cam":
        layer_names = cam_layer_names(view, spec, layer, w)
        layer_modules = [find_layer(view.net, name) for name in layer_names]
        layer_name = "+".join(layer_names)
    elif layer is not None:
        for name in str(layer).split("+"):
            find_layer(view.net, name.strip())  # still catch a wrong name; non-CAM methods do not use it

    if n == 0:
        empty = np.zeros((0, h, w), np.float32)
        return Explanation(empty, empty.copy(), np.zeros(0, np.int64), spec.name, layer_name, p)

    to_channels_last(view.net)
    wrapper = ChannelsLast(view.net)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"explain {spec.name}", unit="img")
    try:
        with explaining(view.net):
            if spec.family == "cam":
                from tumorlens.explain.cam import run_cam

                heat, raw, used = run_cam(wrapper, layer_names, layer_modules, spec, x, t, batch_size, p, bar)
            else:
                from tumorlens.explain.attribution import run_captum

                try:
                    heat, raw, used = run_captum(wrapper, spec, x, t, batch_size, p, bar)
                except RuntimeError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ExplainError(f"{spec.name} cannot run on input of shape {tuple(x.shape)}: {first}") from None
    finally:
        if bar is not None:
            bar.close()
    return Explanation(heat, raw, used, spec.name, layer_name, p)


def cam_layer_names(view, spec, layer: str | None, size: int) -> list[str]:
    """The CAM target layers: the one(s) given, else the method's own choice of stages (spec.layers),
    else the architecture's last convolutional stage."""
    if layer is not None:
        return [name.strip() for name in str(layer).split("+")]
    if spec.layers is not None:
        return list(spec.layers(view.net, size))
    return [target_layer_name(view, None)]
