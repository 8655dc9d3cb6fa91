"""Adapter over Captum: Integrated Gradients, GradientSHAP, Occlusion, LIME and KernelSHAP over
SLIC superpixels, and Saliency, batched so that every model pass sees about `batch_size` images."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

from tumorlens.explain.heatmaps import attribution_heatmaps
from tumorlens.explain.methods import ExplainError, occlusion_geometry
from tumorlens.explain.model_access import ChannelsLast
from tumorlens.explain.superpixels import feature_mask

# How each method's signed attributions become a heatmap (see heatmaps.attribution_heatmaps).
_HEATMAP_STYLE = {
    "ig": ("positive", "percentile"),
    "gradshap": ("positive", "percentile"),
    "saliency": ("absolute", "percentile"),
    "occlusion": ("positive", "max"),
    "lime": ("positive", "max"),
    "kernelshap": ("positive", "max"),
}


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


def run_captum(wrapper: ChannelsLast, method: str, x: torch.Tensor, targets: np.ndarray | None,
               batch_size: int, params: dict, bar=None):
    """-> (heatmaps (N,H,W) in [0,1], raw signed attributions (N,H,W), targets used)."""
    with warnings.catch_warnings():
        # Captum warns about choices made here on purpose (one LIME example per call, inputs that
        # did not require gradients before it set them).
        warnings.simplefilter("ignore", UserWarning)
        if method == "saliency" and targets is None:
            attr, targets = _saliency_of_prediction(wrapper, x, batch_size, bar)
        else:
            if targets is None:
                targets = predict_classes(wrapper, x, batch_size)
            runner = {"ig": _ig, "gradshap": _gradshap, "occlusion": _occlusion, "lime": _surrogate,
                      "kernelshap": _surrogate, "saliency": _saliency}[method]
            with _seeded(params.get("seed")):
                attr = runner(wrapper, method, x, torch.as_tensor(targets), batch_size, params, bar)
    raw = attr[:, 0].detach().float().numpy()
    sign, scale = _HEATMAP_STYLE[method]
    return attribution_heatmaps(raw, sign=sign, scale=scale), raw, np.asarray(targets, dtype=np.int64)


@contextlib.contextmanager
def _seeded(seed):
    """Captum samples with both torch's and numpy's global generators: a seed makes GradientSHAP,
    LIME and KernelSHAP repeatable, and both generators are restored afterwards."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            np.random.seed(int(seed))
            yield
    finally:
        np.random.set_state(state)


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def _tick(bar, k: int) -> None:
    if bar is not None:
        bar.update(k)


def _ig(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(wrapper)
    steps = int(params["steps"])
    if steps < 1:
        raise ExplainError(f"ig steps must be at least 1; got {steps}")
    out = []
    for sl in _chunks(len(x), batch_size):
        chunk = x[sl]
        base = baseline_values(chunk, params["baseline"]).expand_as(chunk)
        # internal_batch_size: each pass carries `batch_size` scaled images, never N*steps at once.
        out.append(ig.attribute(chunk, baselines=base, target=targets[sl], n_steps=steps,
                                internal_batch_size=max(batch_size, len(chunk))))
        _tick(bar, len(chunk))
    return torch.cat(out)


def _gradshap(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import GradientShap

    samples = int(params["samples"])
    if samples < 1:
        raise ExplainError(f"gradshap samples must be at least 1; got {samples}")
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
    return torch.cat(out)


def _occlusion(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import Occlusion

    _, _, h, w = x.shape
    win, stride = occlusion_geometry(h, w, params["window"], params["stride"])
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
    return torch.cat(out)


def _surrogate(wrapper, method, x, targets, batch_size, params, bar):
    """LIME / KernelSHAP: Captum fits one surrogate per image, so images go one by one; the
    perturbed copies of each image are evaluated `batch_size` at a time (perturbations_per_eval)."""
    from captum.attr import KernelShap, Lime

    samples = int(params["samples"])
    if samples < 2:
        raise ExplainError(f"{method} samples must be at least 2; got {samples}")
    explainer = Lime(wrapper) if method == "lime" else KernelShap(wrapper)
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
    return torch.cat(out)


def _saliency(wrapper, method, x, targets, batch_size, params, bar):
    from captum.attr import Saliency

    sal = Saliency(wrapper)
    out = []
    for sl in _chunks(len(x), batch_size):
        out.append(sal.attribute(x[sl], target=targets[sl], abs=True))
        _tick(bar, sl.stop - sl.start)
    return torch.cat(out)


def _saliency_of_prediction(wrapper, x, batch_size, bar):
    from captum.attr import Saliency

    head = _MaxLogit(wrapper)
    sal = Saliency(head)
    out = []
    for sl in _chunks(len(x), batch_size):
        out.append(sal.attribute(x[sl], abs=True))
        _tick(bar, sl.stop - sl.start)
    return torch.cat(out), np.concatenate(head.picked)
