"""What the any-model interface costs (issue 26): forward speed of one network in each format tumorlens
reads, against the same network in plain PyTorch.

- ResNet-18 (torchvision, 4 classes): plain PyTorch; the same weights as a state dict loaded by
  tumorlens (behind SpecInput: channel repeat, ImageNet normalisation); TorchScript; torch.export;
  ONNX converted by onnx2torch; ONNX in onnxruntime (the black-box fallback).
- A small CNN written twice, in PyTorch and in Keras 3 (same layers, same weights copied over),
  Keras on its torch backend through tumorlens against plain PyTorch.

Each row: median ms per batch over --repeats timed passes after two warm-up passes, one torch thread
(this 2-core machine is shared: medians and ratios from one run). The outputs of every format are
checked against plain PyTorch's (max abs difference of the class probabilities).

    python benchmarks/bench_model_formats.py --size 224 --batch 16 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from tumorlens.models.loading import load_model  # noqa: E402

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
IMAGENET = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))


def timed(fn, x, repeats: int) -> tuple[float, np.ndarray]:
    with torch.no_grad():
        for _ in range(2):
            out = fn(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, np.asarray(out)


def softmax(t) -> np.ndarray:
    return torch.softmax(torch.as_tensor(np.asarray(t)), 1).numpy()


def resnet_rows(size: int, batch: int, repeats: int, d: Path) -> list[tuple]:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=4).eval()
    display = torch.rand(batch, 1, size, size)
    rgb = (display.expand(-1, 3, -1, -1) - IMAGENET[0]) / IMAGENET[1]
    example = rgb[:2].clone()
    torch.save(net.state_dict(), d / "sd.pth")
    torch.jit.save(torch.jit.trace(net, example), d / "ts.pt")
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes={"x": {0: torch.export.Dim("b", max=1024)}}),
                      d / "ep.pt2")
    torch.onnx.export(net, (example,), d / "m.onnx", dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    base_ms, base = timed(lambda x: softmax(net(x)), rgb, repeats)
    rows = [("resnet18", "plain PyTorch (reference)", base_ms, 1.0, 0.0)]
    spec = dict(classes=CLASSES, input_size=size, normalize="imagenet")
    for label, path, extra in (("state dict via tumorlens", d / "sd.pth", {"arch": "resnet18"}),
                               ("TorchScript via tumorlens", d / "ts.pt", {}),
                               ("torch.export via tumorlens", d / "ep.pt2", {}),
                               ("ONNX via onnx2torch", d / "m.onnx", {})):
        model = load_model(path, **spec, **extra)
        ms, probs = timed(lambda x: softmax(model.net(x)), display, repeats)
        rows.append(("resnet18", label, ms, ms / base_ms, float(np.abs(probs - base).max())))
    import onnxruntime as ort

    session = ort.InferenceSession(str(d / "m.onnx"), providers=["CPUExecutionProvider"])
    opts_ms, probs = timed(lambda x: softmax(session.run(None, {"x": x.numpy()})[0]), rgb, repeats)
    rows.append(("resnet18", "ONNX in onnxruntime (black-box fallback)", opts_ms, opts_ms / base_ms,
                 float(np.abs(probs - base).max())))
    return rows


class TorchCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        for conv in (self.c1, self.c2, self.c3):
            x = nn.functional.max_pool2d(torch.relu(conv(x)), 2)
        return self.fc(x.mean((2, 3)))


def keras_rows(size: int, batch: int, repeats: int, d: Path) -> list[tuple]:
    import keras

    inputs = keras.Input((size, size, 3))
    x = inputs
    for i, width in enumerate((16, 32, 64)):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"c{i + 1}")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    kmodel = keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))
    tnet = TorchCNN().eval()
    with torch.no_grad():  # the same weights: Keras kernels are (kh, kw, in, out)
        for name in ("c1", "c2", "c3"):
            k, b = kmodel.get_layer(name).get_weights()
            getattr(tnet, name).weight.copy_(torch.from_numpy(np.transpose(k, (3, 2, 0, 1))))
            getattr(tnet, name).bias.copy_(torch.from_numpy(b))
        k, b = kmodel.get_layer("fc").get_weights()
        tnet.fc.weight.copy_(torch.from_numpy(k.T))
        tnet.fc.bias.copy_(torch.from_numpy(b))
    kmodel.save(d / "cnn.keras")
    display = torch.rand(batch, 1, size, size)
    base_ms, base = timed(lambda x: softmax(tnet(x.expand(-1, 3, -1, -1))), display, repeats)
    model = load_model(d / "cnn.keras", classes=CLASSES)
    ms, probs = timed(lambda x: softmax(model.net(x)), display, repeats)
    return [("small CNN", "plain PyTorch (reference)", base_ms, 1.0, 0.0),
            ("small CNN", "Keras 3 on torch via tumorlens", ms, ms / base_ms, float(np.abs(probs - base).max()))]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = resnet_rows(args.size, args.batch, args.repeats, Path(tmp)) + \
            keras_rows(args.size, args.batch, args.repeats, Path(tmp))
    print(f"| network | format | ms per batch of {args.batch} at {args.size} px (median of {args.repeats}) | "
          f"x plain PyTorch | max prob. difference |")
    print("|---|---|---|---|---|")
    for net, label, ms, ratio, diff in rows:
        print(f"| {net} | {label} | {ms:.1f} | {ratio:.2f} | {diff:.1e} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
