"""Adapter over pytorch-grad-cam: Grad-CAM, Grad-CAM++, HiResCAM, Score-CAM, LayerCAM, EigenCAM and
the random baseline, batched, with one CAM object per (network, layer, method).

Hooks live only for the duration of a call: a CAM object keeps its hooks on the network from
construction on, and a hooked network would store every activation of every later forward pass
(the service and the audit share the network with other code). So the cached object is un-hooked
after construction and re-hooked around each call.
"""

from __future__ import annotations

import contextlib
import threading
import types
import weakref
from typing import Iterator
from unittest import mock

import numpy as np
import torch
from torch import nn

from tumorlens.explain.heatmaps import clean_cam
from tumorlens.explain.methods import ExplainError
from tumorlens.explain.model_access import ChannelsLast

_GRADIENT_FREE = {"eigencam", "scorecam"}
# network -> {(layer name, method): CAM object}. Weak keys: the cache never keeps a network alive
# (between calls a cached CAM object holds only its target layer, not the network).
_cache: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _cam_class(method: str):
    import pytorch_grad_cam as pgc

    return {
        "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
        "scorecam": pgc.ScoreCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM, "random": pgc.RandomCAM,
    }[method]


def cam_object(wrapper: ChannelsLast, layer_name: str, layer: nn.Module, method: str):
    """The CAM object for this network, layer and method: built once, then reused."""
    with _cache_lock:
        per_net = _cache.setdefault(wrapper.net, {})
        cam = per_net.get((layer_name, method))
        if cam is None or cam.target_layers[0] is not layer:
            cam = _cam_class(method)(model=wrapper, target_layers=[layer])
            _detach(cam)
            per_net[(layer_name, method)] = cam
        return cam


def _detach(cam) -> None:
    """Remove the CAM object's hooks and its references to the network (until the next call)."""
    cam.activations_and_grads.release()
    cam.activations_and_grads.model = None
    cam.model = None
    cam.outputs = None  # the last batch's output and graph


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


@contextlib.contextmanager
def _hooked(cam, wrapper: ChannelsLast, layer: nn.Module, layer_name: str, needs_grad: bool) -> Iterator[None]:
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    def check_and_root(module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ExplainError(f"layer {layer_name!r} outputs {shape}; CAM methods need a convolutional layer "
                               f"with (N, C, h, w) output")
        if needs_grad:
            # Gradients are needed from this layer up only: start the graph here, so the backward
            # pass stops at the layer instead of running down to the input. Same gradients, less work.
            return output.detach().requires_grad_(True).clone()
        return None

    # Registered before the library's hooks, so theirs see the re-rooted tensor.
    handle = layer.register_forward_hook(check_and_root)
    cam.model = wrapper
    cam.activations_and_grads = ActivationsAndGradients(wrapper, [layer], cam.reshape_transform, cam.detach)
    try:
        yield
    finally:
        handle.remove()
        _detach(cam)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    # RandomCAM draws from numpy's global generator; a seed makes the baseline repeatable.
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(int(seed))
    try:
        yield
    finally:
        np.random.set_state(state)


# Score-CAM opens a tqdm bar per image deep inside the library; explain has its own progress.
_silent_tqdm = types.SimpleNamespace(tqdm=lambda iterable, *a, **k: iterable)


def first_component_projection(activation_batch: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's get_2d_projection (EigenCAM, eigen_smooth): each position's activations
    projected on the first principal component of the centred (positions x channels) matrix.

    Two changes, both hand-written because the library offers no switch:
    - Speed: the library asks numpy for a full SVD per image, of which it uses one vector; for a
      1280-channel layer that cost more than the forward pass (and OpenBLAS threads spinning on a
      busy machine made it 13 ms per image). The leading eigenvector of the small Gram matrix
      (positions x positions, or channels x channels when smaller), one batched eigh for the whole
      batch, gives the same component in about 0.2 ms per image.
    - Sign: a principal component has no sign, and the library keeps whichever one the BLAS returns,
      so its maps come out inverted on some machines (pytorch-grad-cam issue #315). Here the
      component is oriented so that the map correlates positively with the centred channel sum,
      i.e. it points where the layer fires more; the same on every machine."""
    batch = torch.from_numpy(np.nan_to_num(np.asarray(activation_batch, dtype=np.float64), nan=0.0))
    n, c = batch.shape[:2]
    spatial = batch.shape[2:]
    flat = batch.reshape(n, c, -1).transpose(1, 2)  # (N, positions, channels)
    flat = flat - flat.mean(dim=1, keepdim=True)  # centred over positions, as the library does
    # In torch rather than numpy: numpy's OpenBLAS keeps its own threads spinning after a call, and
    # on 2 cores they took the CPU from the next forward pass (EigenCAM efficiency 0.69 -> 0.86 in
    # benchmarks/bench_explain.py with torch's own, passive thread pool).
    if flat.shape[1] <= c:
        w, u = torch.linalg.eigh(flat @ flat.transpose(1, 2))  # ascending eigenvalues
        proj = u[:, :, -1] * w[:, -1].clamp(min=0.0).sqrt()[:, None]
    else:
        _, v = torch.linalg.eigh(flat.transpose(1, 2) @ flat)
        proj = torch.einsum("npc,nc->np", flat, v[:, :, -1])
    toward = flat.sum(dim=2)  # centred channel sum per position
    flip = torch.einsum("np,np->n", proj, toward) < 0
    proj[flip] *= -1
    return proj.reshape(n, *spatial).to(torch.float32).numpy()


_PROJECTION_USERS = ("base_cam", "eigen_cam", "layer_cam", "hirescam")


@contextlib.contextmanager
def _fast_projection() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for module in _PROJECTION_USERS:
            stack.enter_context(mock.patch(f"pytorch_grad_cam.{module}.get_2d_projection", first_component_projection))
        yield


def run_cam(wrapper: ChannelsLast, layer_name: str, layer: nn.Module, method: str, x: torch.Tensor,
            targets: np.ndarray | None, batch_size: int, params: dict, bar=None):
    """-> (heatmaps (N,H,W) in [0,1], raw maps, targets used)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = cam_object(wrapper, layer_name, layer, method)
    needs_grad = method not in _GRADIENT_FREE
    if method == "scorecam":
        cam.batch_size = int(params.get("channel_batch") or batch_size)
        # Score-CAM multiplies each image by every upsampled channel at once (C x H x W floats per
        # image), so one image at a time keeps memory bounded; its forwards are channel batches anyway.
        step = 1
    else:
        step = batch_size
    eigen_smooth = bool(params.get("eigen_smooth", False))
    grad_mode = torch.enable_grad() if needs_grad else torch.inference_mode()
    patch = mock.patch("pytorch_grad_cam.score_cam.tqdm", _silent_tqdm) if method == "scorecam" else contextlib.nullcontext()

    maps, used = [], []
    with _hooked(cam, wrapper, layer, layer_name, needs_grad), _seeded(params.get("seed")), patch, \
            _fast_projection(), grad_mode:
        for i in range(0, len(x), step):
            chunk = x[i : i + step]
            chunk_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets[i : i + step]]
            try:
                out = cam(input_tensor=chunk, targets=chunk_targets, eigen_smooth=eigen_smooth)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise ExplainError(f"{method} cannot run on input of shape {tuple(chunk.shape)}: {first}") from None
            maps.append(np.asarray(out, dtype=np.float32))
            if targets is None:
                used.append(cam.outputs.detach().argmax(dim=1).cpu().numpy())
            else:
                used.append(targets[i : i + step])
            if bar is not None:
                bar.update(len(chunk))
    raw = np.concatenate(maps) if maps else np.zeros((0, *x.shape[-2:]), np.float32)
    return clean_cam(raw), raw, np.concatenate(used).astype(np.int64) if used else np.zeros(0, np.int64)
