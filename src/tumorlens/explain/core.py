"""explain(): every attribution method behind one call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tumorlens.explain.methods import ExplainError, method_spec, resolve_params
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


@dataclass
class Explanation:
    """heatmaps: float32 (N, H, W) in [0, 1] at the input size, high = evidence for the target.
    raw: the method's own maps before normalising (signed attributions for Captum methods, the
    library's CAM for CAM methods). targets: the class explained per image. layer: the CAM layer."""

    heatmaps: np.ndarray
    raw: np.ndarray | None
    targets: np.ndarray
    method: str
    layer: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.heatmaps)


def explain(model, images, method: str = "gradcam", targets=None, batch_size: int = 32, layer: str | None = None,
            *, arch: str | None = None, progress: bool = False, **params) -> Explanation:
    """Explain a model's decisions on a batch of preprocessed images.

    model: a TumorModel, or an nn.Module with its architecture name, as (net, "resnet18") or arch=.
    images: (N, 1, H, W) float tensor (or array), already preprocessed (TumorModel.prepare).
    method: one of METHODS. targets: None (each image's predicted class), one class for all, or
    one per image (indices, or class names for a TumorModel).
    batch_size: images per model pass (perturbation methods fill each pass with this many
    perturbed images). layer: dotted module name overriding the architecture's CAM layer.
    params: the method's own settings (see METHOD_PARAMS); an unknown name is an error.

    The network is put in eval mode with frozen weights for the call and restored afterwards; it
    is converted to channels-last in place once (same numbers, faster on CPU). CAM methods hook
    the network during the call, so calls on one network must not run concurrently.
    """
    spec = method_spec(method)
    p = resolve_params(spec, params)
    if int(batch_size) < 1:
        raise ExplainError(f"batch_size must be at least 1; got {batch_size}")
    batch_size = int(batch_size)
    view = model_view(model, arch)
    x = check_images(images, view)
    t = check_targets(targets, len(x), view)
    n, _, h, w = x.shape

    layer_name = None
    if spec.family == "cam":
        layer_name = target_layer_name(view, layer)
        layer_module = find_layer(view.net, layer_name)
    elif layer is not None:
        find_layer(view.net, layer)  # still catch a wrong name; non-CAM methods do not use it

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

                heat, raw, used = run_cam(wrapper, layer_name, layer_module, spec.name, x, t, batch_size, p, bar)
            else:
                from tumorlens.explain.attribution import run_captum

                try:
                    heat, raw, used = run_captum(wrapper, spec.name, x, t, batch_size, p, bar)
                except RuntimeError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ExplainError(f"{spec.name} cannot run on input of shape {tuple(x.shape)}: {first}") from None
    finally:
        if bar is not None:
            bar.close()
    return Explanation(heat, raw, used, spec.name, layer_name, p)
