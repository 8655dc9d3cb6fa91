"""Keras 3 models (`.keras`, full `.h5`, weights-only `.h5` with a builder) on Keras's torch backend.

On that backend a keras.Model is a torch module whose outputs are torch tensors, so gradients flow
through it as through any network. Two things still stand between it and the explainers: Keras
layers are not registered as named torch children (hooks by dotted name cannot find them), and
their outputs are NHWC while every CAM method expects (N, C, h, w).

`KerasNetwork` bridges both. It splits the model at its CAM layer into a head (input -> that
layer's output) and a tail (that output -> class scores), both keras.Models over the same layers
and weights, and runs `tail(cam(head(x)))` where `cam` is an nn.Identity child that sees the map
in NCHW: pytorch-grad-cam, Captum and the localisation map hook `model.cam` like any convolutional
stage. The head and tail are kept out of the module tree (their NHWC outputs would be misread as
stages); the weights are reached through the full model (`keras`, for parameters(), eval() and
deepcopy) and through one small `KerasWeights` module per Keras layer, which re-initialises that
layer's variables for the sanity check's cascading randomisation (from torch's generator, so a
seeded check is reproducible).

A model with a connection across every candidate split (or none with a spatial map) still runs
with gradients, without CAM methods; the report says why.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumorlens.models.loaded import LoadedNetwork, ModelFormatError, _is_hdf5, require, user_builder
from tumorlens.models.spec import ModelSpec

MIN_CAM_SIDE = 7  # as models/loading.py: the deepest map at least this many cells on a side
MAX_SPLIT_TRIES = 24  # candidate CAM layers tried (deepest first) before giving CAM up
SPLIT_ATOL = 1e-5  # head + tail must reproduce the model's own outputs


# -- keras itself -----------------------------------------------------------------------------------
def import_keras():
    """keras on the torch backend, or an error that says how to get it."""
    if "keras" in sys.modules:
        keras = require("keras", "keras")
        backend = keras.backend.backend()
    else:  # not imported yet: another backend asked for in the environment is refused before importing it
        backend = os.environ.setdefault("KERAS_BACKEND", "torch")
        keras = require("keras", "keras") if backend == "torch" else None
    if backend != "torch":
        raise ModelFormatError(
            f"keras is set to the {backend!r} backend; tumorlens runs Keras models on the torch backend: set "
            "KERAS_BACKEND=torch before importing keras (or before starting Python)")
    return keras


def is_keras_model(obj: Any) -> bool:
    return any(c.__module__.startswith("keras") for c in type(obj).__mro__) and hasattr(obj, "layers")


def _h5_has_config(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return "model_config" in f.attrs


# -- loading ----------------------------------------------------------------------------------------
def load_keras_model(path: Path, spec: ModelSpec, trust_code: bool) -> LoadedNetwork:
    """A `.keras` file, a full `.h5`, or a weights-only `.h5` with spec.arch = "file.py:build_fn"."""
    keras = import_keras()
    path = Path(path)
    notes: list[str] = []
    if _is_hdf5(path) and not _h5_has_config(path):
        model = _from_builder(path, spec, keras)
        notes.append(f"weights-only .h5 loaded into the model built by {spec.arch}")
    else:
        try:
            model = keras.saving.load_model(str(path), compile=False, safe_mode=not trust_code)
        except Exception as exc:  # keras raises ValueError, TypeError and others for files it cannot read
            msg = " ".join(str(exc).split())
            if "safe_mode" in msg or ("Lambda" in msg and "arbitrary code" in msg):
                raise ModelFormatError(
                    f"{path} contains Python code (a Keras Lambda layer): loading it runs that code. If you trust "
                    "its author, pass --trust-code (trust_code=True)") from None
            raise ModelFormatError(f"{path}: Keras cannot load it: {type(exc).__name__}: {msg[:400]}") from None
        if trust_code:
            notes.append("loaded with --trust-code: Python code in the file (Lambda layers) may have run")
    return keras_network(model, spec, fmt="keras", notes=notes)


def _from_builder(path: Path, spec: ModelSpec, keras) -> Any:
    if not spec.arch:
        raise ModelFormatError(
            f"{path} holds Keras weights only (no model configuration): give the function that builds the model "
            "with --arch path/to/model.py:build_fn (it returns the Keras model the weights were saved from)")
    file, sep, name = spec.arch.rpartition(":")
    if not sep or not file.endswith(".py"):
        raise ModelFormatError(f"--arch {spec.arch!r}: a weights-only Keras file needs a builder given as "
                               "path/to/model.py:build_fn")
    model = user_builder(Path(file), name)(**dict(spec.arch_kwargs))
    if not is_keras_model(model):
        raise ModelFormatError(f"--arch {spec.arch}: returned a {type(model).__name__}, not a Keras model")
    try:
        model.load_weights(str(path))
    except Exception as exc:  # shape or layer-count mismatches: keras's own message says which
        msg = " ".join(str(exc).split())
        raise ModelFormatError(f"{path}: the weights do not fit the model built by {spec.arch}: "
                               f"{type(exc).__name__}: {msg[:400]}") from None
    return model


def keras_network(model: Any, spec: ModelSpec | None = None, fmt: str = "keras_model",
                  notes: list[str] | None = None) -> LoadedNetwork:
    """An in-memory Keras model (or one just loaded) as a LoadedNetwork with its CAM layer in NCHW."""
    import_keras()
    spec = spec or ModelSpec()
    notes = list(notes or [])
    shape = _input_shape(model)
    layout = "NCHW" if _channels_first(model) else "NHWC"
    found: dict[str, Any] = {"layout": layout}
    if shape is not None and len(shape) == 4:
        c, h, w = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
        found["channels"] = c
        found["input_size"] = h if h is not None and h == w else None
        notes.append(f"Keras input shape {tuple(shape)} ({layout})")
    size = spec.input_size or found.get("input_size")
    channels = spec.channels or found.get("channels") or 3
    net, why = KerasNetwork.split(model, size, channels, layout, spec.cam_layer)
    if net is None:
        notes.append(f"CAM methods are not available: {why}; gradient methods still run")
        return LoadedNetwork(KerasNetwork(model, None, None, layout), fmt, hookable=False, notes=notes, **found)
    notes.append(f"CAM at Keras layer {net.cam_layer_name!r} ({why})")
    return LoadedNetwork(net, fmt, notes=notes, cam_layer="cam", **found)


def _input_shape(model) -> tuple | None:
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, list):  # several inputs: tumorlens feeds one image
        shape = shape[0] if len(shape) == 1 else None
    return tuple(shape) if shape is not None else None


def _channels_first(model) -> bool:
    for layer in _walk_layers(model):
        fmt = getattr(layer, "data_format", None)
        if fmt is not None:
            return fmt == "channels_first"
    return False


def _walk_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk_layers(layer)


# -- the network --------------------------------------------------------------------------------------
class KerasWeights(nn.Module):
    """One Keras layer's variables as torch parameters (the same tensors Keras computes with), with
    `reset_parameters` for the sanity check. Never called: it only holds and re-initialises."""

    def __init__(self, layer):
        super().__init__()
        self.layer_name = layer.name
        self.kinds: dict[str, str] = {}
        for i, v in enumerate(layer.weights):
            name = f"w{i}_{v.name}".replace("/", "_").replace(".", "_")
            self.register_parameter(name, v.value)
            self.kinds[name] = v.name

    def reset_parameters(self) -> None:
        """Keras's defaults, drawn from torch's generator: kernels Glorot-uniform, biases and shifts
        zero, scales and variances one."""
        with torch.no_grad():
            for name, p in self.named_parameters(recurse=False):
                kind = self.kinds[name]
                if kind in ("gamma", "moving_variance"):
                    p.fill_(1.0)
                elif p.ndim < 2 or kind in ("bias", "beta", "moving_mean"):
                    p.zero_()
                else:  # kernel (h, w, in, out), depthwise or dense: fans as keras computes them
                    receptive = math.prod(p.shape[:-2]) if p.ndim > 2 else 1
                    fan_in, fan_out = p.shape[-2] * receptive, p.shape[-1] * receptive
                    limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
                    p.uniform_(-limit, limit)

    def extra_repr(self) -> str:
        return f"keras layer {self.layer_name!r}"


class KerasNetwork(nn.Module):
    """A Keras model run as tail(cam(head(x))), `cam` seeing the CAM layer's map in NCHW.

    Without a split (head None) it runs the whole model and exposes no CAM layer."""

    def __init__(self, model, head, tail, layout: str, cam_layer_name: str | None = None):
        super().__init__()
        self.keras = model  # registered: parameters(), train()/eval() and deepcopy reach the weights
        self.cam = nn.Identity()
        self.layers = nn.ModuleList(KerasWeights(layer) for layer in model.layers if layer.weights)
        # unregistered: hooks and stage discovery must not see their NHWC outputs
        self._split = (head, tail)
        self.nhwc = layout == "NHWC"
        self.cam_layer_name = cam_layer_name

    def __deepcopy__(self, memo):
        """A copy over a deep copy of the Keras model, split again at the same layer: Keras copies its
        layers and variables its own way, so the copied head, tail and weight holders are rebuilt
        over the copy (the sanity check randomises a copy and must leave the original alone)."""
        model = copy.deepcopy(self.keras, memo)
        head = tail = None
        if self._split[0] is not None:
            keras = import_keras()
            out = model.get_layer(self.cam_layer_name).output
            head, tail = keras.Model(model.inputs, out), keras.Model(out, model.outputs)
        new = type(self)(model, head, tail, "NHWC" if self.nhwc else "NCHW", self.cam_layer_name)
        new.train(self.training)
        memo[id(self)] = new
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = self._split
        if head is None:
            return self.keras(x)
        a = head(x)
        if self.nhwc:
            return tail(self.cam(a.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        return tail(self.cam(a))

    @classmethod
    def split(cls, model, size: int | None, channels: int, layout: str, declared: str | None = None):
        """(a KerasNetwork split at the CAM layer, how it was chosen), or (None, why not)."""
        keras = import_keras()
        if size is None:
            return None, "the model does not say its input size (give input_size)"
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError) as exc:
            return None, f"the model has no functional graph to split ({exc})"
        if not inputs or len(inputs) != 1:
            return None, "the model does not take exactly one input"
        probe = torch.rand(2, size, size, channels, generator=torch.Generator().manual_seed(0))
        if layout == "NCHW":
            probe = probe.permute(0, 3, 1, 2).contiguous()
        sides = _map_sides(model, probe, layout)
        if declared:
            names = [layer.name for layer in model.layers]
            if declared not in names:
                raise ModelFormatError(f"cam_layer {declared!r} is not a layer of the Keras model; its layers: "
                                       f"{', '.join(names[-30:])}")
            candidates, how = [declared], "declared"
        else:
            big = [n for n, s in sides if s >= MIN_CAM_SIDE]
            rest = [n for n, s in sides if 1 < s < MIN_CAM_SIDE]
            candidates = big[::-1][:MAX_SPLIT_TRIES] + rest[::-1][:4]
            how = "found automatically"
            if not candidates:
                return None, "no layer has a spatial map"
        with torch.no_grad():
            want = model(probe)
        reasons = []
        for name in candidates:
            layer = model.get_layer(name)
            try:
                head = keras.Model(inputs, layer.output)
                tail = keras.Model(layer.output, outputs)
                net = cls(model, head, tail, layout, name)
                with torch.no_grad():
                    got = net(probe)
                diff = float((got - want).abs().max())
            except Exception as exc:  # keras refuses graphs that cross the split ("Graph disconnected")
                reasons.append(f"{name}: {type(exc).__name__}")
                continue
            if diff <= SPLIT_ATOL * max(1.0, float(want.abs().max())):
                side = dict(sides).get(name)
                return net, f"{how}, {side}x{side} at {size} px" if side else how
            reasons.append(f"{name}: split disagrees by {diff:.1e}")
        if declared:
            raise ModelFormatError(f"cam_layer {declared!r}: the model cannot be split there ({reasons[0]}); a layer "
                                   "with connections that bypass it (a skip connection) cannot be the CAM layer")
        return None, "no candidate layer splits the model (" + "; ".join(reasons[:3]) + ")"


def _map_sides(model, probe: torch.Tensor, layout: str) -> list[tuple[str, int]]:
    """(layer name, smaller spatial side of its 4-D output) for each top-level layer with a 4-D
    output, in the order the layers finish in one forward pass."""
    seen: list[tuple[str, int]] = []
    handles = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer" or not isinstance(layer, nn.Module):
            continue

        def record(module, inputs, output, name=layer.name):
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                h, w = (output.shape[1], output.shape[2]) if layout == "NHWC" else (output.shape[2], output.shape[3])
                seen.append((name, int(min(h, w))))

        handles.append(layer.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    last: dict[str, int] = {}
    for name, side in seen:  # a layer called twice (shared) counts where it last finished
        last.pop(name, None)
        last[name] = side
    return list(last.items())
