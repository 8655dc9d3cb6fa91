"""A foreign model's preprocessing, declared rather than guessed: the model spec.

A researcher's classifier was trained on images prepared one particular way (RGB or grayscale,
NHWC or NCHW, 64 or 299 px, scaled to [0, 1], [-1, 1] or ImageNet statistics), and its outputs are
logits or already probabilities, in a class order only its author knows. The spec says so, in a
small TOML or YAML file beside the model (`--model-spec FILE`) or as keyword arguments / CLI flags
with the same names. A tumorlens checkpoint carries its own recipe and needs no spec.

    classes = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]  # output order
    input_size = 224
    channels = 3               # 1 or 3 (grayscale repeated)
    layout = "NCHW"            # or "NHWC" (Keras)
    resize = "bilinear"        # nearest, bilinear, bicubic, area
    normalize = "imagenet"     # unit [0,1], minus1to1, imagenet, zscore (per image), or mean/std below
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]
    outputs = "logits"         # or "probabilities" (the model ends in a softmax)
    intensity_max = 255        # [0, 1] as x / 255; default: each slice's own min-max
    cam_layer = "layer4"       # default: found automatically
    arch = "resnet18"          # for a state dict: a torchvision / timm name or "path/model.py:ClassName"
    arch_kwargs = {}           # keyword arguments for the builder
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tumorlens.errors import TumorlensError

LAYOUTS = ("NCHW", "NHWC")
RESIZES = ("nearest", "bilinear", "bicubic", "area")
OUTPUTS = ("logits", "probabilities")
# name -> (mean, std) applied to [0, 1] input; "zscore" is per image, so it has no fixed numbers
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "unit": ((0.0,), (1.0,)),
    "minus1to1": ((0.5,), (0.5,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "zscore": None,
    "custom": None,  # explicit mean and std
}


class ModelSpecError(TumorlensError):
    """A model spec that cannot be used; the message names the key and the accepted values."""


@dataclass
class ModelSpec:
    """How to feed a foreign model and read its outputs. None: not declared (found from the model
    where possible, else a default that the report states)."""

    classes: list[str] | None = None
    input_size: int | None = None
    channels: int | None = None
    layout: str | None = None  # None: the model's own (Keras: NHWC), else NCHW
    resize: str = "bilinear"
    normalize: str = "unit"
    mean: list[float] | None = None
    std: list[float] | None = None
    outputs: str = "logits"
    cam_layer: str | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    intensity_max: float | None = None  # divide by this for [0, 1] (x / 255); None: each slice's min-max

    def __post_init__(self) -> None:
        if isinstance(self.classes, str):
            self.classes = [c.strip() for c in self.classes.split(",") if c.strip()]
        self.layout = None if self.layout is None else str(self.layout).upper()
        self.resize = str(self.resize).lower()
        self.normalize = str(self.normalize).lower()
        self.outputs = str(self.outputs).lower()
        if self.mean is not None or self.std is not None:
            if self.mean is None or self.std is None:
                raise ModelSpecError("give both mean and std, or neither")
            self.mean, self.std = _floats(self.mean, "mean"), _floats(self.std, "std")
            self.normalize = "custom"
        if self.layout is not None:
            _choice("layout", self.layout, LAYOUTS)
        _choice("resize", self.resize, RESIZES)
        _choice("normalize", self.normalize, tuple(NORMALIZATIONS))
        _choice("outputs", self.outputs, OUTPUTS)
        if self.normalize == "custom" and self.mean is None:
            raise ModelSpecError("normalize = 'custom' needs mean and std")
        if self.channels is not None and int(self.channels) not in (1, 3):
            raise ModelSpecError(f"channels must be 1 or 3, got {self.channels}")
        if self.input_size is not None and int(self.input_size) < 8:
            raise ModelSpecError(f"input_size must be at least 8 pixels, got {self.input_size}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ModelSpecError(f"std must be positive, got {self.std}")
        if self.classes is not None and len(self.classes) < 2:
            raise ModelSpecError(f"a classifier needs at least 2 classes, got {self.classes}")
        if self.intensity_max is not None and not float(self.intensity_max) > 0:
            raise ModelSpecError(f"intensity_max must be positive, got {self.intensity_max}")
        if not self.temperature > 0:
            raise ModelSpecError(f"temperature must be positive, got {self.temperature}")

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """Per-channel mean and std applied to [0, 1] input; None for per-image z-scoring."""
        if self.normalize == "custom":
            return tuple(self.mean), tuple(self.std)
        return NORMALIZATIONS[self.normalize]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with the given keys changed (None values are ignored: 'not given')."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(given) - set(FIELDS))
        if unknown:
            raise ModelSpecError(f"unknown model spec key(s) {unknown}; known: {', '.join(FIELDS)}")
        d = self.to_dict()
        if ("mean" in given or "std" in given) and "normalize" not in given:
            d["normalize"] = "custom"
        if given.get("normalize", "custom") != "custom":  # a named normalisation replaces explicit numbers
            d["mean"] = d["std"] = None
        d.update(given)
        return ModelSpec(**d)


FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec))


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ModelSpecError(f"model spec: {key} = {value!r}; choose one of: {', '.join(allowed)}")


def _floats(values, key: str) -> list[float]:
    if isinstance(values, (int, float)):
        values = [values]
    if isinstance(values, str):
        values = values.split(",")
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ModelSpecError(f"model spec: {key} must be a number or a list of numbers, got {values!r}") from None


def read_spec(path: str | Path) -> ModelSpec:
    """A spec from a TOML (.toml) or YAML (.yaml, .yml) file; unknown keys are an error."""
    path = Path(path)
    if not path.is_file():
        raise ModelSpecError(f"model spec not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            import tomllib

            data = tomllib.loads(text)
    except Exception as exc:  # the parsers' own error types differ; all mean "not a readable spec"
        raise ModelSpecError(f"{path}: not a readable model spec ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ModelSpecError(f"{path}: a model spec is a table of keys, got {type(data).__name__}")
    try:
        return ModelSpec().replace(**data)
    except TypeError as exc:
        raise ModelSpecError(f"{path}: {exc}") from None


def spec_template(found: dict[str, Any]) -> str:
    """A TOML spec to fill in, with what `tumorlens model inspect` found already written."""
    def val(v):
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return str(v)

    rows = [
        ("classes", found.get("classes") or [f"class_{i}" for i in range(found.get("num_outputs") or 4)],
         "class names in the order of the model's outputs (CHECK THIS)"),
        ("input_size", found.get("input_size") or 224, "side of the square input, pixels"),
        ("channels", found.get("channels") or 3, "1 (grayscale) or 3 (grayscale repeated as RGB)"),
        ("layout", found.get("layout") or "NCHW", "NCHW (PyTorch) or NHWC (Keras, TensorFlow)"),
        ("resize", "bilinear", "nearest, bilinear, bicubic or area"),
        ("normalize", "unit", "unit [0,1], minus1to1 [-1,1], imagenet, zscore (per image), or give mean and std"),
        ("outputs", found.get("outputs") or "logits", "logits, or probabilities when the model ends in a softmax"),
    ]
    if found.get("arch"):
        rows.append(("arch", found["arch"], "architecture of the state dict"))
    if found.get("cam_layer"):
        rows.append(("cam_layer", found["cam_layer"], "layer whose activations CAM methods read"))
    lines = ["# tumorlens model spec: how to feed this model (tumorlens model inspect wrote this; check every line)"]
    lines += [f"{k} = {val(v)}  # {why}" for k, v, why in rows]
    lines.append("# intensity_max = 255  # if the model was trained on x / 255: [0, 1] by that, not each slice's min-max")
    return "\n".join(lines) + "\n"
