"""What every model-format loader returns and shares: the loaded network, the format errors, optional
imports named by their extra, the user's own builder file. Its own module, so that the format table
(formats.py) and the loaders of heavier formats (onnx_model.py, keras_model.py) need not import each other."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from tumorlens.models.checkpoint import CheckpointError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class ModelFormatError(CheckpointError):
    """A model file that cannot be loaded as given; the message names what it is and what to pass.
    A CheckpointError, so code written when tumorlens read only its own checkpoints still catches it."""


class MissingExtra(ModelFormatError):
    """An optional dependency for this format is not installed."""


@dataclass
class LoadedNetwork:
    """A foreign network, ready to be wrapped: the module, whether gradients flow through it,
    whether its submodules can be hooked (CAM), and what the file itself says about classes."""

    module: nn.Module
    format: str
    gradients: bool = True
    hookable: bool = True
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    # what the file says about its input, when it does (ONNX and Keras record a shape)
    input_size: int | None = None
    channels: int | None = None
    layout: str | None = None
    # the CAM layer in `module` when the loader chose it (Keras: the NCHW view of the split model)
    cam_layer: str | None = None


def require(module: str, extra: str):
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"this model format needs the optional package {module!r}: "
                           f"pip install 'tumorlens[{extra}]'") from None


def _head(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _is_hdf5(path: Path) -> bool:
    return _head(path) == HDF5_MAGIC


def user_builder(file: Path, name: str) -> Callable[..., nn.Module]:
    """Import the user's model file (their own code, named by them on the command line) and return
    the class or function `name` from it."""
    if not file.is_file():
        raise ModelFormatError(f"--arch: model file not found: {file}")
    spec = importlib.util.spec_from_file_location(f"tumorlens_user_model_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error in it is theirs to see
        raise ModelFormatError(f"--arch: importing {file} failed: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, name):
        found = [k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)]
        raise ModelFormatError(f"--arch: {file} has no {name!r}; nn.Module classes in it: {', '.join(found) or 'none'}")
    return getattr(module, name)
