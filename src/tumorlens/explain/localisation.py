"""Localisation maps you can check: the network's stages by stride, and the control they are chosen on.

Grad-CAM at the last stage of EfficientNet-Lite0 is 7 x 7 at 224 px: where its peak lands says as
much about the map's resolution as about the model. A map for localisation figures is chosen by
measurement instead (benchmarks/bench_localisation.py): on a control where the evidence's place is
known, phantoms whose class is decided only by a small blob at a random position in the brain, a
map must put its peak on the blob (pointing game) and its energy in it.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
import torch
from torch import nn

__all__ = ["stage_layers", "stage_strides", "blob_control"]

# net -> {input side: {stride: layer name}}; weak keys: never keeps a network alive.
_stages: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_stages_lock = threading.Lock()


def stage_strides(net: nn.Module, size: int) -> dict[int, str]:
    """{stride: layer name} for the network's stages at input side `size`: for each output stride,
    the last stage to finish at that resolution. Stages are the modules at the top two levels of
    the module tree (resnet's layer2, timm's blocks.2, torchvision's features.2), so the map is
    the stage's output, not an expansion convolution inside the next block. One probe forward
    pass per network and size, remembered."""
    with _stages_lock:
        known = _stages.get(net, {}).get(int(size))
    if known is not None:
        return dict(known)
    found: dict[int, str] = {}
    handles = []

    def hook_for(name):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-1] > 1:
                stride = int(round(size / output.shape[-1]))
                if not found.get(stride, "").startswith(name + "."):  # a container ending on its child: keep the child
                    found[stride] = name  # later finishers overwrite

        return record

    # a wrapper around a foreign network (models/spec_input.py) names the network's root and the
    # channels it takes itself
    prefix = getattr(net, "stage_root", "") + "." if getattr(net, "stage_root", "") else ""
    for name, module in net.named_modules():
        stage = name[len(prefix):] if name.startswith(prefix) else ""  # its name below the network's root
        if stage and stage.count(".") <= 1:
            handles.append(module.register_forward_hook(hook_for(name)))
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    channels = getattr(net, "input_channels", None) or (first.in_channels if first is not None else 1)
    was_training = net.training
    try:
        net.eval()
        with torch.inference_mode():
            net(torch.zeros(1, channels, int(size), int(size)).to(memory_format=torch.channels_last))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    with _stages_lock:
        _stages.setdefault(net, {})[int(size)] = dict(found)
    return found


def stage_layers(net: nn.Module, size: int, strides) -> list[str]:
    """Layer names at the given output strides (each: the nearest stride the network has); empty
    when the network has no stage with spatial output."""
    have = stage_strides(net, size)
    if not have:
        return []  # the caller (a method's layer choice) says what is wrong
    names = []
    for s in strides:
        nearest = min(have, key=lambda k: (abs(np.log2(k / s)), -k))
        if have[nearest] not in names:
            names.append(have[nearest])
    return names


def blob_control(n: int, size: int = 224, seed: int = 0, sigma_px: float | None = None, contrast: float = 0.35):
    """Phantom heads (tumorlens.data.synthetic, no tumor) where half the slices carry one small
    Gaussian blob at a random position inside the brain; the blob alone decides the class.

    Returns images (n, size, size) float32 on the phantoms' 0-1 scale, labels (n,) (1 = blob),
    blob masks (n, size, size) bool (within 2 sigma of the centre; all False without a blob) and
    brain masks. sigma_px: default size / 64 (3.5 px at 224: the blob's 2-sigma disk, 7 px in
    radius, is far smaller than one 32 px cell of Lite0's 7 x 7 last stage)."""
    from tumorlens.data.synthetic import make_phantoms

    sigma = float(sigma_px) if sigma_px is not None else size / 64
    heads = make_phantoms(n, classes=("notumor",), size=size, seed=seed)
    rng = np.random.default_rng([seed, 99])
    labels = rng.permutation(np.arange(n) % 2)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    images = np.zeros((n, size, size), np.float32)
    blobs = np.zeros((n, size, size), bool)
    brains = np.zeros((n, size, size), bool)
    import cv2

    for i, s in enumerate(heads.samples):
        img = np.array(s.image, np.float32)
        brain = np.asarray(s.meta["brain_mask"], bool)
        brains[i] = brain
        if labels[i]:
            # the whole blob inside the brain: centres at least 3 sigma from its edge
            inner = cv2.distanceTransform(brain.astype(np.uint8), cv2.DIST_L2, 5) > 3 * sigma
            ys, xs = np.nonzero(inner if inner.any() else brain)
            k = int(rng.integers(len(ys)))
            r2 = (yy - ys[k]) ** 2 + (xx - xs[k]) ** 2
            img += contrast * np.exp(-r2 / (2 * sigma * sigma)).astype(np.float32)
            blobs[i] = r2 <= (2 * sigma) ** 2
        images[i] = img
    return images, labels.astype(np.int64), blobs, brains
