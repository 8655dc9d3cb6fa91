"""Model file formats: one table, chosen by sniffing the file, as the data readers are.

Each entry says how to recognise a file (`sniff`: its first bytes, its zip listing, its suffix) and
how to turn it into a torch module (`load`). A newcomer adds a format by writing one loader and one
row of FORMATS. Loading never runs code the user did not agree to: pickled modules and Keras
files with Python code inside load only with trust_code=True.

The tumorlens checkpoint is not in this table's loaders: it carries its own recipe and classes and
is read by models/checkpoint.py; `sniff_format` still names it, so every caller asks one function.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from tumorlens.models.keras_model import load_keras_model
from tumorlens.models.loaded import (  # noqa: F401 (re-exported: callers know them as formats.*)
    LoadedNetwork, MissingExtra, ModelFormatError, _head, _is_hdf5, require, user_builder,
)
from tumorlens.models.onnx_model import load_onnx_model
from tumorlens.models.spec import ModelSpec


@dataclass(frozen=True)
class ModelFormat:
    name: str
    description: str
    sniff: Callable[[Path], bool]
    load: Callable[[Path, ModelSpec, bool], LoadedNetwork] | None
    extra: str | None = None  # the pip extra it needs: pip install 'tumorlens[extra]'


# -- sniffing --------------------------------------------------------------------------------------
def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _is_torchscript(path: Path) -> bool:
    return any("/code/__torch__/" in n for n in _zip_names(path))


def _is_torch_export(path: Path) -> bool:
    return any(n.endswith("/archive_format") for n in _zip_names(path))


def _is_torch_save(path: Path) -> bool:
    names = _zip_names(path)
    if names:
        return any(n.endswith("/data.pkl") for n in names) and not _is_torchscript(path)
    return _head(path, 2) in (b"\x80\x02", b"\x80\x04", b"\x80\x05")  # legacy pickle-based torch.save


def _is_keras_zip(path: Path) -> bool:
    names = set(_zip_names(path))
    return "config.json" in names and "metadata.json" in names


def _is_onnx(path: Path) -> bool:
    # ONNX is a bare protobuf with no magic number: its suffix is the convention every exporter follows
    return path.suffix.lower() == ".onnx"


# -- loading: torch files --------------------------------------------------------------------------
def read_torch_file(path: Path, trust_code: bool) -> Any:
    """torch.load, data only unless the user trusts the file; a pickled class is named in the error."""
    try:
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_code:
            what = _pickled_global(str(exc))
            raise ModelFormatError(
                f"{path} is a pickled Python object{f' ({what})' if what else ''}, not plain weights: loading it "
                "runs code from the file. If you trust its author, pass --trust-code (trust_code=True); "
                "otherwise save a state dict (torch.save(model.state_dict(), ...)) and pass --arch") from None
    if not trust_code:
        raise ModelFormatError(f"{path}: not readable as plain weights")
    return torch.load(path, map_location="cpu", weights_only=False)


def _pickled_global(message: str) -> str:
    import re

    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return m.group(1) if m else ""


STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def as_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """The tensors of a state dict, also when nested under a common key ({'state_dict': ...}) or
    saved from DataParallel ('module.' prefixes)."""
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], dict):
                inner = as_state_dict(obj[key])
                if inner:
                    return inner
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors and len(tensors) >= len(obj) / 2:
            if all(k.startswith("module.") for k in tensors):
                tensors = {k[len("module."):]: v for k, v in tensors.items()}
            return tensors
    return None


def build_architecture(arch: str, num_classes: int, in_chans: int, kwargs: dict) -> nn.Module:
    """A torchvision or timm name, or 'path/to/file.py:ClassName' (the user's own builder)."""
    if ":" in arch and arch.split(":", 1)[0].endswith(".py"):
        file, name = arch.rsplit(":", 1)
        return user_builder(Path(file), name)(**kwargs)
    import torchvision

    if arch in torchvision.models.list_models():
        net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
        if in_chans != 3:
            _set_first_conv_channels(net, in_chans)
        return net
    import timm

    if timm.is_model(arch):
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    raise ModelFormatError(f"unknown architecture {arch!r}: give a torchvision or timm model name (e.g. resnet18, "
                           "efficientnet_b0), or your own builder as path/to/model.py:ClassName")


def _set_first_conv_channels(net: nn.Module, in_chans: int) -> None:
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            new = nn.Conv2d(in_chans, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                            m.bias is not None)
            parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
            setattr(parent, name.rsplit(".", 1)[-1], new)
            return


def _shapes(sd: dict[str, torch.Tensor]) -> tuple[int | None, int | None]:
    """(input channels, outputs) read off a state dict: the first 4-D weight, the last 2-D weight."""
    convs = [v for k, v in sd.items() if k.endswith("weight") and v.ndim == 4]
    linears = [v for k, v in sd.items() if k.endswith("weight") and v.ndim == 2]
    return (int(convs[0].shape[1]) if convs else None), (int(linears[-1].shape[0]) if linears else None)


def load_state_dict(path: Path, spec: ModelSpec, trust_code: bool) -> LoadedNetwork:
    sd = as_state_dict(read_torch_file(path, trust_code=False))
    if sd is None:
        raise ModelFormatError(f"{path}: a torch file, but neither a state dict nor a tumorlens checkpoint")
    in_chans, outputs = _shapes(sd)
    if spec.arch is None:
        raise ModelFormatError(
            f"{path} is a state dict (weights only, {len(sd)} tensors, {outputs or '?'} outputs): give the "
            "architecture with --arch NAME (a torchvision or timm name, e.g. resnet18) or "
            "--arch path/to/model.py:ClassName")
    n = len(spec.classes) if spec.classes else outputs
    if n is None:
        raise ModelFormatError(f"{path}: cannot tell the number of classes; give them with --classes")
    net = build_architecture(spec.arch, n, spec.channels or in_chans or 3, dict(spec.arch_kwargs))
    missing, unexpected = _load_weights(net, sd)
    if missing or unexpected:
        raise ModelFormatError(
            f"{path}: the weights do not fit {spec.arch!r}: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); check --arch and its keyword arguments")
    return LoadedNetwork(net, "state_dict")


def _load_weights(net: nn.Module, sd: dict) -> tuple[list[str], list[str]]:
    try:
        res = net.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # size mismatch
        first = str(exc).strip().splitlines()
        raise ModelFormatError(f"the weights do not fit the architecture: {' '.join(first[:3])[:400]}") from None
    return list(res.missing_keys), list(res.unexpected_keys)


def load_pickled_module(path: Path, spec: ModelSpec, trust_code: bool) -> LoadedNetwork:
    obj = read_torch_file(path, trust_code)
    if isinstance(obj, nn.Module):
        return LoadedNetwork(obj, "pickled_module", notes=["loaded with --trust-code: the file's pickled code ran"])
    sd = as_state_dict(obj)
    if sd is not None:
        return load_state_dict(path, spec, trust_code)
    raise ModelFormatError(f"{path}: holds a {type(obj).__name__}, not a model or a state dict")


def load_torchscript(path: Path, spec: ModelSpec, trust_code: bool) -> LoadedNetwork:
    net = torch.jit.load(str(path), map_location="cpu")
    # a scripted forward calls its submodules without nn.Module.__call__, so hooks on them never fire
    return LoadedNetwork(net, "torchscript", hookable=False,
                         notes=["TorchScript: layers cannot be hooked, so CAM methods are not available"])


def load_torch_export(path: Path, spec: ModelSpec, trust_code: bool) -> LoadedNetwork:
    program = torch.export.load(str(path))
    return LoadedNetwork(ExportedModule(program.module()), "torch_export")


class ExportedModule(nn.Module):
    """An ExportedProgram's module, which refuses train()/eval() (its mode is fixed at export):
    tumorlens toggles modes around every explanation, so the toggle stops here."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.program = module

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def forward(self, x):
        return self.program(x)


def load_onnx(path: Path, spec: ModelSpec, trust_code: bool) -> LoadedNetwork:
    return load_onnx_model(path, spec)


def _is_tumorlens(path: Path) -> bool:
    """A torch.save zip whose pickle (the small data.pkl, tensors live apart) carries the checkpoint's
    format header; read as bytes, never unpickled, so sniffing costs no second load of the weights."""
    from tumorlens.models.checkpoint import FORMAT

    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            return pkl is not None and not _is_torchscript(path) and FORMAT.encode() in z.read(pkl)
    except (zipfile.BadZipFile, OSError):
        return False


# Order matters: the first format whose sniff says yes loads the file.
FORMATS: list[ModelFormat] = [
    ModelFormat("tumorlens", "tumorlens checkpoint (weights, recipe, classes, provenance)", _is_tumorlens, None),
    ModelFormat("torchscript", "TorchScript archive (torch.jit.save)", _is_torchscript, load_torchscript),
    ModelFormat("torch_export", "torch.export program (.pt2, torch.export.save)", _is_torch_export, load_torch_export),
    ModelFormat("torch", "torch.save file: a state dict (give --arch) or a pickled nn.Module (give --trust-code)",
                _is_torch_save, load_pickled_module),
    ModelFormat("onnx", "ONNX model (run through onnx2torch, checked against onnxruntime)", _is_onnx, load_onnx,
                extra="onnx"),
    ModelFormat("keras", "Keras 3 model (.keras, or a full .h5) on Keras's torch backend",
                lambda p: _is_keras_zip(p) or _is_hdf5(p), load_keras_model, extra="keras"),
]


def sniff_format(path: str | Path) -> ModelFormat:
    """The format of a model file, or an error that names what the file looks like."""
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFormatError(f"{path} is a folder; give the model file itself (e.g. model.pt, model.onnx, "
                               "model.keras). A TensorFlow SavedModel folder is not supported: export it to ONNX")
    if path.stat().st_size == 0:
        raise ModelFormatError(f"model file is empty: {path}")
    for fmt in FORMATS:
        if fmt.sniff(path):
            return fmt
    head = _head(path, 16)
    if head[:2] == b"PK":
        raise ModelFormatError(f"{path} is a zip archive that cannot be read whole (damaged or cut short?): "
                               "torch, TorchScript and Keras files are zip archives; save the model again")
    hint = " (it looks like an image)" if head[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1") else ""
    raise ModelFormatError(
        f"{path} is not a model file tumorlens can read{hint}. Readable: " +
        "; ".join(f"{f.name}: {f.description}" for f in FORMATS) +
        ". Anything else can be audited as a Python function: tumorlens.audit(my_predict_fn, ...)")
