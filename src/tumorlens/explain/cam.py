"""CAM methods over pytorch-grad-cam: Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM, Score-CAM, EigenCAM
and the random baseline, batched.

Each method is a small subclass of the library's class that overrides one hook (`get_cam_image`
or `get_cam_weights`), as the library's own eigen_cam.py does. The registry (methods.py) names
the class of each method. A CAM object is built for one call inside `with`, so its hooks live
only for that call and nothing is shared between threads: the service runs one model thread per
network replica, and a hooked network would otherwise store every activation of every later
forward pass. Building one costs microseconds beside the model pass.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Iterator, Sequence

import numpy as np
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from tumorlens.explain.heatmaps import clean_cam
from tumorlens.explain.methods import ExplainError, Method
from tumorlens.explain.model_access import ChannelsLast

__all__ = ["GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "ScoreCAM", "EigenCAM", "RandomCAM",
           "first_component_projection", "run_cam"]


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


# -- the classes: one hook each ---------------------------------------------------------------------
class _Scoped:
    """What every CAM class here adds to the library's BaseCAM: the registry's parameters, and an
    exit that releases the hooks without swallowing errors (BaseCAM.__exit__ prints and swallows an
    IndexError, which would turn a failed explanation into a silent None)."""

    def configure(self, params: dict, batch_size: int) -> None:
        """Method parameters that the library reads from the object; most methods have none."""

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.activations_and_grads.release()
        return False


class _ChannelWeighted(_Scoped):
    """eigen_smooth through first_component_projection for the channel-weight methods (the
    library's get_cam_image with the projection swapped; without eigen_smooth, the library's)."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
        if not eigen_smooth:
            return super().get_cam_image(input_tensor, target_layer, targets, activations, grads, False)
        weights = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        return first_component_projection(weights[:, :, None, None] * activations)


class GradCAM(_ChannelWeighted, pgc.GradCAM):
    """Grad-CAM: channels weighted by their mean gradient."""


class GradCAMPlusPlus(_ChannelWeighted, pgc.GradCAMPlusPlus):
    """Grad-CAM++: channels weighted by positive gradients with the paper's alpha coefficients."""


class HiResCAM(_Scoped, pgc.HiResCAM):
    """HiResCAM: element-wise gradient x activation (its faithfulness guarantee holds without
    eigen_smooth only, as the library warns)."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
        if not eigen_smooth:
            return super().get_cam_image(input_tensor, target_layer, targets, activations, grads, False)
        warnings.warn("HiResCAM's faithfulness guarantees do not hold if smoothing is applied", stacklevel=2)
        return first_component_projection(grads * activations)


class LayerCAM(_Scoped, pgc.LayerCAM):
    """LayerCAM: element-wise positive gradient x activation."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
        if not eigen_smooth:
            return super().get_cam_image(input_tensor, target_layer, targets, activations, grads, False)
        return first_component_projection(np.maximum(grads, 0) * activations)


class EigenCAM(_Scoped, pgc.EigenCAM):
    """EigenCAM: the layer's first principal component (first_component_projection)."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
        return first_component_projection(activations)


class RandomCAM(_ChannelWeighted, pgc.RandomCAM):
    """Random channel weights, uniform in [-1, 1]. With a seed they come from the object's own
    generator (the same numbers as numpy's global generator seeded alike, which the library draws
    from), so a seeded call neither reads nor moves the global state another thread may use."""

    _rng = None

    def configure(self, params: dict, batch_size: int) -> None:
        seed = params.get("seed")
        self._rng = None if seed is None else np.random.RandomState(int(seed))

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        if self._rng is None:
            return super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        return self._rng.uniform(-1, 1, size=(grads.shape[0], grads.shape[1]))


class ScoreCAM(_Scoped, pgc.ScoreCAM):
    """Score-CAM: each channel's weight is the target score of the image masked by that channel.

    The library's get_cam_weights, restated because it opens a tqdm bar per image with no switch
    to turn it off (explain shows its own progress), and scores a whole channel batch at once
    instead of one output at a time. Same arithmetic, same weights."""

    batch_size = 16  # channel-masked images per forward (the library's default)

    def configure(self, params: dict, batch_size: int) -> None:
        self.batch_size = int(params.get("channel_batch") or batch_size)

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        with torch.no_grad():
            upsampled = nn.UpsamplingBilinear2d(size=input_tensor.shape[-2:])(
                torch.from_numpy(activations).to(self.device))
            flat = upsampled.view(upsampled.size(0), upsampled.size(1), -1)
            maxs, mins = flat.max(dim=-1)[0][:, :, None, None], flat.min(dim=-1)[0][:, :, None, None]
            upsampled = (upsampled - mins) / (maxs - mins + 1e-8)
            masked = input_tensor[:, None, :, :] * upsampled[:, :, None, :, :]
            scores = []
            for target, tensor in zip(targets, masked):
                for i in range(0, tensor.size(0), self.batch_size):
                    out = self.model(tensor[i : i + self.batch_size])
                    if isinstance(target, ClassifierOutputTarget):
                        scores.append(out[:, target.category].float().cpu())
                    else:
                        scores.append(torch.tensor([float(target(o)) for o in out]))
            scores = torch.cat(scores).view(activations.shape[0], activations.shape[1])
            return torch.softmax(scores, dim=-1).numpy()


# -- running one method over a batch -----------------------------------------------------------------
@contextlib.contextmanager
def _checked_and_rooted(wrapper: ChannelsLast, layers: Sequence[nn.Module], names: Sequence[str],
                        needs_grad: bool) -> Iterator[None]:
    """Forward hooks, registered before the CAM object's own (so that the library's hooks see the
    re-rooted tensor): every target layer must output (N, C, h, w); with gradients, the graph
    starts at the first target layer a forward pass reaches, so the backward pass stops there
    instead of running down to the input. Same gradients, less work. (Rooting a later layer too
    would cut an earlier target layer off the graph.) Forward passes from other threads are left
    alone: code that shares the network (a test, a caller's own inference) does not reset the
    rooting of this call's pass."""
    rooted = [False]
    caller = threading.get_ident()  # a forward pass of the same network from another thread is not ours

    def reset(module, inputs):
        if threading.get_ident() == caller:
            rooted[0] = False

    def hook_for(name):
        def check_and_root(module, inputs, output):
            if threading.get_ident() != caller:
                return None
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise ExplainError(f"layer {name!r} outputs {shape}; CAM methods need a convolutional layer "
                                   f"with (N, C, h, w) output")
            if needs_grad and not rooted[0]:
                rooted[0] = True
                return output.detach().requires_grad_(True).clone()
            return None

        return check_and_root

    handles = [wrapper.register_forward_pre_hook(reset)]
    handles += [layer.register_forward_hook(hook_for(name)) for layer, name in zip(layers, names)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_cam(wrapper: ChannelsLast, layer_names: Sequence[str], layers: Sequence[nn.Module], method: Method,
            x: torch.Tensor, targets: np.ndarray | None, batch_size: int, params: dict, bar=None):
    """-> (heatmaps (N,H,W) in [0,1], raw maps, targets used). Several layers: the library's
    mean of the per-layer maps, each scaled to [0, 1] at the input size."""
    cam_class = method.load()
    needs_grad = method.needs_gradients
    # Score-CAM multiplies each image by every upsampled channel at once (C x H x W floats per
    # image), so one image at a time keeps memory bounded; its forwards are channel batches anyway.
    step = 1 if method.one_image_at_a_time else batch_size
    eigen_smooth = bool(params.get("eigen_smooth", False))
    grad_mode = torch.enable_grad() if needs_grad else torch.inference_mode()

    maps, used = [], []
    with _checked_and_rooted(wrapper, layers, layer_names, needs_grad), \
            cam_class(model=wrapper, target_layers=list(layers)) as cam, grad_mode:
        cam.configure(params, batch_size)
        for i in range(0, len(x), step):
            chunk = x[i : i + step]
            chunk_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets[i : i + step]]
            try:
                out = cam(input_tensor=chunk, targets=chunk_targets, eigen_smooth=eigen_smooth)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise ExplainError(f"{method.name} cannot run on input of shape {tuple(chunk.shape)}: {first}") from None
            maps.append(np.asarray(out, dtype=np.float32))
            if targets is None:
                used.append(cam.outputs.detach().argmax(dim=1).cpu().numpy())
            else:
                used.append(targets[i : i + step])
            cam.outputs = None  # this chunk's output and graph
            if bar is not None:
                bar.update(len(chunk))
    raw = np.concatenate(maps) if maps else np.zeros((0, *x.shape[-2:]), np.float32)
    return clean_cam(raw), raw, np.concatenate(used).astype(np.int64) if used else np.zeros(0, np.int64)
