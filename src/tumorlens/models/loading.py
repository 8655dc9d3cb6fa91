"""`load_model(model, spec)`: any model a researcher brings, as the one TumorModel interface.

Accepted: a path (sniffed against models/formats.py's table: tumorlens checkpoint, state dict +
architecture, pickled module with trust_code, TorchScript, torch.export, ONNX, Keras), a
TumorModel, an nn.Module, a Keras model object, or a plain function (images -> probabilities).
A foreign model's preprocessing comes from its spec (models/spec.py), never from a guess: what the
spec leaves out and the model cannot tell (its class names, its input size) is an error that says
which key to give.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.class_names import canonical_classes
from tumorlens.models.formats import LoadedNetwork, ModelFormatError, sniff_format
from tumorlens.models.spec import ModelSpec, read_spec
from tumorlens.models.spec_input import BlackBox, SpecInput

MIN_CAM_SIDE = 7  # the automatic CAM layer: the deepest map at least this many cells on a side


def make_spec(spec: ModelSpec | str | Path | dict | None = None, **keys: Any) -> ModelSpec:
    """A ModelSpec from a file, a dict or a ModelSpec, with keyword keys on top (None: not given)."""
    if spec is None:
        base = ModelSpec()
    elif isinstance(spec, ModelSpec):
        base = spec
    elif isinstance(spec, dict):
        base = ModelSpec().replace(**spec)
    else:
        base = read_spec(spec)
    return base.replace(**keys)


def load_model(model: Any, spec: ModelSpec | str | Path | dict | None = None, *, trust_code: bool = False,
               name_outputs: bool = False, **spec_keys: Any) -> TumorModel:
    """Any supported model as a TumorModel.

    Args:
        model: a model file path, a TumorModel, an nn.Module, a Keras model, or a callable taking a
            float32 array laid out as the spec declares and returning (N, C) probabilities or logits.
        spec: a ModelSpec, a spec file (TOML/YAML) or a dict; ignored keys are an error.
        trust_code: allow loading files whose loading runs code (pickled modules, Keras Lambda layers).
        name_outputs: call undeclared classes output_0, output_1, ... instead of refusing (model inspect).
        **spec_keys: spec keys given directly (classes=..., input_size=..., normalize=...).

    Returns:
        TumorModel: takes display images through its recipe; `source` records format, spec and notes.

    Raises:
        ModelFormatError, ModelSpecError: the file or spec cannot be used; the message says what to pass.
    """
    if isinstance(model, TumorModel):
        return model
    given = {k: v for k, v in spec_keys.items() if v is not None}
    if isinstance(model, (str, Path)):
        path = Path(model)
        fmt = sniff_format(path)
        if fmt.load is None:  # a tumorlens checkpoint carries its own recipe and classes
            if spec is not None or given:
                raise ModelFormatError(f"{path} is a tumorlens checkpoint: it carries its own preprocessing and "
                                       "classes; drop the model spec")
            from tumorlens.models.checkpoint import load_model as load_checkpoint

            return load_checkpoint(path)
        s = make_spec(spec, **given)
        loaded = fmt.load(path, s, trust_code)
        version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return wrap(loaded, s, name=s.arch or fmt.name, version=f"{fmt.name}-{version}", name_outputs=name_outputs)
    s = make_spec(spec, **given)
    if _is_keras_model(model):
        from tumorlens.models.keras_model import keras_network

        loaded = keras_network(model, s)
    elif isinstance(model, nn.Module):
        loaded = LoadedNetwork(model, "nn.Module")
    elif callable(model):
        loaded = LoadedNetwork(BlackBox(model), "callable", gradients=False, hookable=False,
                               notes=["a plain function: gradient-free maps only"])
    else:
        raise ModelFormatError(f"cannot audit a {type(model).__name__}: give a model file, an nn.Module, a Keras "
                               "model or a function images -> probabilities")
    return wrap(loaded, s, name=s.arch or type(model).__name__, version=f"{loaded.format}-{id(model):x}",
                name_outputs=name_outputs)


def _is_keras_model(obj: Any) -> bool:
    return any(c.__module__.startswith("keras") for c in type(obj).__mro__)


def wrap(loaded: LoadedNetwork, spec: ModelSpec, name: str, version: str, name_outputs: bool = False) -> TumorModel:
    """A foreign network behind SpecInput, with the recipe, classes and CAM layer its spec gives."""
    size = spec.input_size or loaded.input_size
    if size is None:
        raise ModelFormatError("the model does not say its input size: give input_size (--input-size), e.g. 224")
    channels = spec.channels or loaded.channels or _first_conv_channels(loaded.module) or 3
    spec = spec.replace(input_size=size, channels=channels, layout=spec.layout or loaded.layout or "NCHW")
    net = SpecInput(loaded.module, spec, channels).eval()
    n_outputs = _probe_outputs(net, size)
    classes = spec.classes or loaded.classes or (
        [f"output_{i}" for i in range(n_outputs)] if name_outputs else None)
    if classes is None:
        raise ModelFormatError(
            f"the model has {n_outputs} outputs but no class names: give them in output order, e.g. "
            f"--classes glioma,meningioma,notumor,pituitary (or classes = [...] in the model spec)")
    if len(classes) != n_outputs:
        raise ModelFormatError(f"the spec names {len(classes)} classes ({', '.join(classes)}) but the model has "
                               f"{n_outputs} outputs")
    recipe = PreprocessRecipe(size=int(size), clip_low=0.0, clip_high=100.0, mean=0.0, std=1.0,
                              interpolation=spec.resize,
                              value_max=None if spec.intensity_max is None else float(spec.intensity_max))
    cam_layer, cam_how = None, None
    if loaded.hookable:
        if loaded.cam_layer:  # the loader chose it (and honoured spec.cam_layer); its notes say which
            cam_layer, cam_how = f"model.{loaded.cam_layer}", "set by the loader"
        elif spec.cam_layer:
            cam_layer, cam_how = f"model.{spec.cam_layer}", "declared"
            try:
                net.get_submodule(cam_layer)
            except AttributeError:
                near = [n for n, _ in layer_sides(net, size, top_level=True)]
                raise ModelFormatError(f"cam_layer {spec.cam_layer!r} is not a layer of this model; its top-level "
                                       f"layers with a spatial map: {', '.join(n.removeprefix('model.') for n in near)} "
                                       "(`tumorlens model inspect` lists them)") from None
        else:
            cam_layer, cam_how = find_cam_layer(net, size), "found automatically"
    notes = list(loaded.notes)
    if cam_layer and not loaded.cam_layer:  # a loader that chose the layer has said so in its notes
        notes.append(f"CAM layer {cam_layer.removeprefix('model.')} ({cam_how})")
    return TumorModel(net=net, arch=name, classes=canonical_classes(list(classes)), recipe=recipe,
                      temperature=spec.temperature, version=version, gradients=loaded.gradients,
                      hookable=loaded.hookable and cam_layer is not None, cam_layer=cam_layer,
                      source={"format": loaded.format, "spec": spec.to_dict(), "declared_classes": list(classes),
                              "notes": notes})


def _first_conv_channels(net: nn.Module) -> int | None:
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else None


def _probe_outputs(net: nn.Module, size: int) -> int:
    try:
        with torch.no_grad():
            out = net(torch.full((2, 1, size, size), 0.5))
    except Exception as exc:  # the user's network: any failure means the spec does not fit it
        raise ModelFormatError(f"the model does not run on the declared input ({size} px, "
                               f"{net.channels} channel(s), {net.layout}): {type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}") from None
    if out.ndim != 2 or out.shape[1] < 2:
        raise ModelFormatError(f"the model returns shape {tuple(out.shape)}; a classifier returns (batch, classes)")
    return int(out.shape[1])


def spatial_side(output: Any) -> int | None:
    """The smaller spatial side of a layer's 4-D output, else None. Torch layers compute in NCHW
    whatever layout the network's input has (Keras's CAM point is re-laid as NCHW: keras_model.py)."""
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        return None
    return int(min(output.shape[2], output.shape[3]))


def layer_sides(net: SpecInput, size: int, top_level: bool = False) -> list[tuple[str, int]]:
    """(layer name, spatial side) of the wrapped network's layers with a 4-D output, in the order they
    finish in one probe pass at the model's input size; top_level: only the network's own children."""
    seen: list[tuple[str, int]] = []

    def record(name):
        def hook(module, inputs, output):
            side = spatial_side(output)
            if side:
                seen.append((name, side))
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in net.named_modules()
               if name.startswith("model.") and (not top_level or name.count(".") == 1)]
    try:
        with torch.no_grad():
            net(torch.full((1, 1, size, size), 0.5))
    finally:
        for h in handles:
            h.remove()
    return seen


def find_cam_layer(net: SpecInput, size: int) -> str | None:
    """The deepest layer whose output is a spatial map of at least MIN_CAM_SIDE cells a side at the
    model's input size (the last to finish in one probe pass); failing that, the last with any map."""
    seen = layer_sides(net, size)
    big = [n for n, side in seen if side >= MIN_CAM_SIDE]
    any_map = [n for n, side in seen if side > 1]
    return (big or any_map or [None])[-1]


def cam_candidates(net: SpecInput, size: int) -> list[str]:
    """The network's top-level layers with a spatial output at its input size, as 'name (side px)',
    input to output (a deeper layer can still be named as cam_layer)."""
    return [f"{name.removeprefix('model.')} ({side} px)" for name, side in layer_sides(net, size, top_level=True)
            if side > 1]


def spec_layer_name(model: TumorModel) -> str | None:
    """The CAM layer as a spec's cam_layer names it: a Keras model's own layer name, else the module
    path inside the user's network (without the wrapper's `model.`); a tumorlens model's registry layer."""
    layer = model.target_layer
    if layer is None or not model.source:
        return layer
    return getattr(model.net.model, "cam_layer_name", None) or layer.removeprefix("model.")


def describe(model: TumorModel) -> dict[str, Any]:
    """What the report and `model inspect` say about a model: format, input, classes, capabilities."""
    src = model.source or {"format": "tumorlens"}
    return {"format": src.get("format", "tumorlens"), "input_size": model.recipe.size, "classes": model.classes,
            "declared_classes": src.get("declared_classes", model.classes), "cam_layer": spec_layer_name(model),
            "capabilities": model.capabilities, "notes": src.get("notes", []), "spec": src.get("spec")}
