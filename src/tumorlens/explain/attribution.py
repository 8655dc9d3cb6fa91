"""Adapter over Captum: Integrated Gradients, GradientSHAP, Occlusion, LIME and KernelSHAP over
SLIC superpixels, and Saliency, batched so that every model pass sees about `batch_size` images.

Each method's runner (named by the registry, methods.py) has one signature:
runner(wrapper, method, x, targets or None, batch_size, params, bar) -> (attributions (N,1,H,W),
targets used); None means each image's predicted class."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from tumorlens.explain.heatmaps import attribution_heatmaps
from tumorlens.explain.methods import ExplainError, Method, occlusion_geometry
from tumorlens.explain.model_access import ChannelsLast
from tumorlens.explain.superpixels import feature_mask
from tumorlens.seeding import seeded

def baseline_values(x: torch.Tensor, baseline) -> torch.Tensor:
    """(N, 1, 1, 1) reference value per image. "black": the image's minimum, i.e. black after the
    recipe's percentile clipping (the MRI background), so removing a region means darkening it;
    "zero": 0 in model-input units (mid-grey for a z-scored recipe); or a number."""
    if isinstance(baseline, str):
        if baseline == "black":
            return x.amin(dim=(1, 2, 3), keepdim=True)
        if baseline == "zero":
            return torch.zeros(len(x), 1, 1, 1, dtype=x.dtype)
        raise ExplainError(f"unknown baseline {baseline!r}; use 'black', 'zero' or a number")
    try:
        value = float(baseline)
    except (TypeError, ValueError):
        raise ExplainError(f"baseline must be 'black', 'zero' or a number; got {baseline!r}") from None
    return torch.full((len(x), 1, 1, 1), value, dtype=x.dtype)


@torch.inference_mode()
def predict_classes(wrapper: ChannelsLast, x: torch.Tensor, batch_size: int) -> np.ndarray:
    return np.concatenate([wrapper(x[i : i + batch_size]).argmax(dim=1).numpy() for i in range(0, len(x), batch_size)])


class _MaxLogit(torch.nn.Module):
    """The largest logit per image: its gradient is the saliency of the predicted class, obtained
    in the same pass that finds the prediction (a separate prediction pass would cost saliency a
    third of its time). The classes it picked are kept in `.picked`."""

    def __init__(self, wrapper: ChannelsLast):
        super().__init__()
        self.wrapper = wrapper
        self.picked: list[np.ndarray] = []

    def forward(self, x):
        logits = self.wrapper(x)
        best = logits.argmax(dim=1)
        self.picked.append(best.detach().numpy())
        return logits.gather(1, best[:, None])[:, 0]


def run_captum(wrapper: ChannelsLast, method: Method, x: torch.Tensor, targets: np.ndarray | None,
               batch_size: int, params: dict, bar=None):
    """-> (heatmaps (N,H,W) in [0,1], raw signed attributions (N,H,W), targets used)."""
    runner = method.load()
    with warnings.catch_warnings():
        # Captum warns about choices made here on purpose (one LIME example per call, inputs that
        # did not require gradients before it set them).
        warnings.simplefilter("ignore", UserWarning)
        with seeded(params.get("seed")):  # Captum samples from the global generators
            attr, targets = runner(wrapper, method, x, targets, batch_size, params, bar)
    raw = attr[:, 0].detach().float().numpy()
    sign, scale = method.heatmap_style
    return attribution_heatmaps(raw, sign=sign, scale=scale), raw, np.asarray(targets, dtype=np.int64)


def _targets(wrapper: ChannelsLast, x: torch.Tensor, targets, batch_size: int) -> torch.Tensor:
    """The given targets, or each image's predicted class."""
    return torch.as_tensor(predict_classes(wrapper, x, batch_size) if targets is None else targets)


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def _tick(bar, k: int) -> None:
    if bar is not None:
        bar.update(k)


def integrated_gradients(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import IntegratedGradients

    steps = int(params["steps"])
    if steps < 1:
        raise ExplainError(f"{method.name} steps must be at least 1; got {steps}")
    targets = _targets(wrapper, x, targets, batch_size)
    ig = IntegratedGradients(wrapper)
    out = []
    for sl in _chunks(len(x), batch_size):
        chunk = x[sl]
        base = baseline_values(chunk, params["baseline"]).expand_as(chunk)
        # internal_batch_size: each pass carries `batch_size` scaled images, never N*steps at once.
        out.append(ig.attribute(chunk, baselines=base, target=targets[sl], n_steps=steps,
                                internal_batch_size=max(batch_size, len(chunk))))
        _tick(bar, len(chunk))
    return torch.cat(out), targets


def gradient_shap(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import GradientShap

    samples = int(params["samples"])
    if samples < 1:
        raise ExplainError(f"{method.name} samples must be at least 1; got {samples}")
    targets = _targets(wrapper, x, targets, batch_size)
    gs = GradientShap(wrapper)
    # Captum sends chunk * samples noisy images through one pass: size the chunk to fill a batch.
    per_call = max(1, batch_size // samples)
    out = []
    for sl in _chunks(len(x), per_call):
        chunk = x[sl]
        pool = baseline_values(chunk, params["baseline"]).expand_as(chunk).contiguous()
        out.append(gs.attribute(chunk, baselines=pool, n_samples=samples, stdevs=float(params["stdev"]),
                                target=targets[sl]))
        _tick(bar, len(chunk))
    return torch.cat(out), targets


def occlusion(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import Occlusion

    _, _, h, w = x.shape
    win, stride = occlusion_geometry(h, w, params["window"], params["stride"])
    targets = _targets(wrapper, x, targets, batch_size)
    occ = Occlusion(wrapper)
    out = []
    for sl in _chunks(len(x), batch_size):
        chunk = x[sl]
        # Each forward carries len(chunk) * perturbations_per_eval occluded images: about a batch.
        ppe = max(1, batch_size // len(chunk))
        with torch.inference_mode():
            out.append(occ.attribute(chunk, sliding_window_shapes=(1, win, win), strides=(1, stride, stride),
                                     baselines=baseline_values(chunk, params["baseline"]), target=targets[sl],
                                     perturbations_per_eval=ppe))
        _tick(bar, len(chunk))
    return torch.cat(out), targets


def _surrogate(explainer_class, wrapper, method, x, targets, batch_size, params, bar):
    """LIME / KernelSHAP: Captum fits one surrogate per image, so images go one by one; the
    perturbed copies of each image are evaluated `batch_size` at a time (perturbations_per_eval)."""
    samples = int(params["samples"])
    if samples < 2:
        raise ExplainError(f"{method.name} samples must be at least 2; got {samples}")
    targets = _targets(wrapper, x, targets, batch_size)
    explainer = explainer_class(wrapper)
    out = []
    for i in range(len(x)):
        img = x[i : i + 1]
        mask = feature_mask(img[0], params["n_segments"], params["compactness"])
        base = float(baseline_values(img, params["baseline"]).item())
        with torch.inference_mode():
            out.append(explainer.attribute(img, target=targets[i : i + 1], feature_mask=mask, baselines=base,
                                           n_samples=samples, perturbations_per_eval=batch_size,
                                           return_input_shape=True))
        _tick(bar, 1)
    return torch.cat(out), targets


def lime(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import Lime

    return _surrogate(Lime, wrapper, method, x, targets, batch_size, params, bar)


def kernel_shap(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import KernelShap

    return _surrogate(KernelShap, wrapper, method, x, targets, batch_size, params, bar)


def saliency(wrapper, method, x, targets, batch_size, params, bar):
    """Absolute input gradient. Without targets, the gradient of the largest logit: the predicted
    class's saliency from the same pass that finds the prediction."""
    from captum.attr import Saliency

    if targets is None:
        head = _MaxLogit(wrapper)
        sal = Saliency(head)
        out = []
        for sl in _chunks(len(x), batch_size):
            out.append(sal.attribute(x[sl], abs=True))
            _tick(bar, sl.stop - sl.start)
        return torch.cat(out), np.concatenate(head.picked)
    sal = Saliency(wrapper)
    targets = torch.as_tensor(targets)
    out = []
    for sl in _chunks(len(x), batch_size):
        out.append(sal.attribute(x[sl], target=targets[sl], abs=True))
        _tick(bar, sl.stop - sl.start)
    return torch.cat(out), targets
