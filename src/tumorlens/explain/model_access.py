"""What an explainer needs from a model: the network, its architecture's CAM layer, a checked
input batch, and a fast, side-effect-free way to run it."""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from tumorlens.explain.methods import ExplainError


@dataclass
class ModelView:
    net: nn.Module
    arch: str | None
    classes: list[str] | None  # class names when the model carries them (TumorModel)
    input_size: int | None  # the size the model was trained at, when known (TumorModel recipe)
    cam_layer: str | None = None  # the model's own CAM layer (TumorModel.target_layer)
    in_chans: int | None = None  # channels the model takes, when it says (a TumorModel: 1)


def model_view(model: Any, arch: str | None = None) -> ModelView:
    """A TumorModel, an (nn.Module, arch name) pair, or an nn.Module (with arch= or none)."""
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], nn.Module):
        model, arch = model
    net = getattr(model, "net", None)
    if isinstance(net, nn.Module) and hasattr(model, "recipe"):  # a TumorModel
        return ModelView(net, model.arch, list(model.classes), int(model.recipe.size),
                         cam_layer=getattr(model, "target_layer", None), in_chans=1)
    if isinstance(model, nn.Module):
        if arch is not None:
            from tumorlens.models.registry import ARCHITECTURES

            if arch not in ARCHITECTURES:
                raise ExplainError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
        return ModelView(model, arch, None, None)
    raise ExplainError(
        f"model must be a TumorModel (tumorlens.models.checkpoint.load_model) or an nn.Module with its "
        f"architecture name, e.g. (net, 'resnet18'); got {type(model).__name__}"
    )


def find_layer(net: nn.Module, name: str) -> nn.Module:
    """The submodule at a dotted name; an unknown name lists the nearest real ones."""
    try:
        return net.get_submodule(name)
    except AttributeError:
        pass
    names = [n for n, _ in net.named_modules() if n]
    near = difflib.get_close_matches(name, names, n=6, cutoff=0.5)
    if not near:  # nothing alike: show the top-level stages, where a user starts looking
        near = [n for n, _ in net.named_children()]
    raise ExplainError(f"unknown layer {name!r} in {type(net).__name__}; nearby names: {', '.join(near)}")


def target_layer_name(view: ModelView, layer: str | None) -> str:
    if layer is not None:
        return layer
    if view.cam_layer is not None:
        return view.cam_layer
    from tumorlens.models.registry import ARCHITECTURES

    if view.arch not in ARCHITECTURES:
        raise ExplainError(
            "CAM methods need a target layer: give the architecture name, e.g. explain((net, 'resnet18'), ...), "
            "or layer='dotted.module.name'"
        )
    return ARCHITECTURES[view.arch].target_layer


def input_channels(net: nn.Module) -> int | None:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def num_outputs(net: nn.Module) -> int | None:
    """Classes the network scores: the last Linear layer's width (all registry models end in one)."""
    last = None
    for m in net.modules():
        if isinstance(m, nn.Linear):
            last = m
    return None if last is None else last.out_features


def check_images(images: Any, view: ModelView) -> torch.Tensor:
    """A float (N, 1, H, W) tensor the model accepts, or an ExplainError saying what is wrong."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise ExplainError(f"images must be a (N, 1, H, W) tensor or array; got {type(images).__name__}")
    if images.ndim == 3:  # (N, H, W): a batch of grayscale images without the channel axis
        images = images[:, None]
    if images.ndim != 4:
        raise ExplainError(f"images must have shape (N, 1, H, W); got {tuple(images.shape)}")
    want = view.in_chans or getattr(view.net, "input_channels", None) or input_channels(view.net)
    if want is not None and images.shape[1] != want:
        hint = " (convert colour images to grayscale first, e.g. with the model's recipe)" if want == 1 else ""
        raise ExplainError(f"the model expects {want}-channel input; got {images.shape[1]} channels, "
                           f"shape {tuple(images.shape)}{hint}")
    h, w = images.shape[-2:]
    if view.input_size is not None and (h, w) != (view.input_size, view.input_size):
        raise ExplainError(
            f"images are {h}x{w} but this model was trained on {view.input_size}x{view.input_size} input; "
            f"preprocess them with model.prepare(raw_images)"
        )
    if not images.is_floating_point():
        raise ExplainError(f"images must be float (preprocessed model input); got {images.dtype}")
    images = images.detach().float()
    if not torch.isfinite(images).all():
        raise ExplainError("images contain NaN or infinite values")
    return images


def check_targets(targets: Any, n: int, view: ModelView) -> np.ndarray | None:
    """None (explain the predicted class), or one class index per image; names allowed when the
    model knows its classes."""
    if targets is None:
        return None
    if isinstance(targets, (int, np.integer, str)):
        items = [targets] * n
    elif isinstance(targets, (list, tuple)):
        items = list(targets)
    else:  # array or tensor
        items = list(np.asarray(targets).ravel())
    if len(items) != n:
        raise ExplainError(f"got {len(items)} targets for {n} images; give one per image, one for all, or none")
    n_classes = len(view.classes) if view.classes else num_outputs(view.net)
    out = []
    for t in items:
        if isinstance(t, (str, np.str_)):
            if not view.classes or t not in view.classes:
                known = f"; classes: {', '.join(view.classes)}" if view.classes else " (this model has no class names)"
                raise ExplainError(f"unknown target class {t!r}{known}")
            t = view.classes.index(t)
        try:
            t = int(t)
        except (TypeError, ValueError):
            raise ExplainError(f"target {t!r} is neither a class index nor a class name") from None
        if t < 0 or (n_classes is not None and t >= n_classes):
            raise ExplainError(f"target class index {t} is out of range; the model has {n_classes} classes")
        out.append(t)
    return np.asarray(out, dtype=np.int64)


class ChannelsLast(nn.Module):
    """Runs the network with channels-last tensors. On CPU this layout makes convolutions, above all
    the depthwise ones of EfficientNet, several times faster; a one-channel batch is ambiguous about
    its layout, so it is re-strided here rather than left to whatever each library passes in."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(memory_format=torch.channels_last))


def to_channels_last(net: nn.Module) -> None:
    # In place and numerically identical; done once (later calls find the weights already converted).
    if any(p.ndim == 4 and not p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters()):
        net.to(memory_format=torch.channels_last)


@contextlib.contextmanager
def explaining(net: nn.Module) -> Iterator[None]:
    """Eval mode and frozen weights for the duration of an explanation, restored afterwards.

    Frozen weights: explainers need gradients with respect to inputs or activations only; with the
    weights frozen, autograd neither records the layers below the target nor writes .grad into the
    caller's model."""
    was_training = net.training
    flags = [(p, p.requires_grad) for p in net.parameters()]
    net.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        net.train(was_training)


def run_checked(fn, x_shape: tuple, *args, **kwargs):
    """Call a model-running function, turning the network's own shape errors (an image too small for
    the architecture, say) into one clear ExplainError."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExplainError(f"the model cannot run on input of shape {tuple(x_shape)}: {first}") from None
