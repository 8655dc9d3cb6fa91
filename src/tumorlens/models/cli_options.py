"""The model options every command that takes a model shares: --model-spec, the spec's keys as flags
(--arch, --classes, --input-size, ...) and --trust-code. Declared once here; `with_model_options`
adds them to a Typer command, which receives them as one `model_options` dict for load_model."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Optional

import typer

# name -> (type, typer.Option); None defaults mean "not given": the spec file or the model decides
MODEL_OPTIONS = {
    "model_spec": (Optional[Path], typer.Option(None, "--model-spec", help="a foreign model's spec (TOML/YAML): "
                                                 "classes, input_size, channels, layout, resize, normalize, outputs, "
                                                 "cam_layer; `tumorlens model inspect FILE` writes a template")),
    "arch": (Optional[str], typer.Option(None, "--arch", help="architecture of a state dict: a torchvision or timm "
                                         "name (resnet18), or path/to/model.py:ClassName")),
    "classes": (Optional[str], typer.Option(None, "--classes", help="the model's class names in output order, "
                                            "comma-separated")),
    "input_size": (Optional[int], typer.Option(None, "--input-size", help="the model's input side, pixels")),
    "channels": (Optional[int], typer.Option(None, "--channels", help="1 or 3 input channels")),
    "layout": (Optional[str], typer.Option(None, "--layout", help="NCHW or NHWC")),
    "resize": (Optional[str], typer.Option(None, "--resize", help="nearest, bilinear, bicubic or area")),
    "normalize": (Optional[str], typer.Option(None, "--normalize", help="unit, minus1to1, imagenet or zscore")),
    "outputs": (Optional[str], typer.Option(None, "--outputs", help="logits or probabilities")),
    "intensity_max": (Optional[float], typer.Option(None, "--intensity-max", help="scale pixels to [0, 1] by this "
                                                    "(255: x / 255, as most training code does); default: each "
                                                    "slice's own min-max")),
    "cam_layer": (Optional[str], typer.Option(None, "--cam-layer", help="the model's CAM layer (dotted name); "
                                              "default: found automatically")),
    "trust_code": (bool, typer.Option(False, "--trust-code", help="allow loading a file whose loading runs code "
                                      "(a pickled nn.Module, a Keras Lambda layer): only for files you trust")),
}


def with_model_options(command):
    """Add MODEL_OPTIONS to a Typer command; it gets them as `model_options` (load_model's keywords)."""
    sig = inspect.signature(command)
    own = [p for p in sig.parameters.values() if p.name != "model_options"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
             for name, (ann, opt) in MODEL_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        opts = {name: kwargs.pop(name, None) for name in MODEL_OPTIONS}
        return command(*args, model_options=model_options(**opts), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + extra)
    return wrapper


def model_options(model_spec=None, trust_code=False, **spec_keys) -> dict:
    """load_model's keyword arguments from the command line's values."""
    return {"spec": model_spec, "trust_code": bool(trust_code), **{k: v for k, v in spec_keys.items() if v is not None}}
