"""ONNX models: converted to a torch module with onnx2torch, so that every method (gradients, CAM
hooks) runs on them, and checked against onnxruntime's outputs on a random batch when loaded; a
model the converter cannot handle (or whose conversion disagrees) runs in onnxruntime as a black
box, with the reason in the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tumorlens.models.formats import LoadedNetwork, ModelFormatError, require
from tumorlens.models.spec import ModelSpec
from tumorlens.models.spec_input import BlackBox, first_tensor

AGREEMENT_ATOL = 1e-4  # conversion vs onnxruntime, on the model's own outputs (float32 arithmetic)


def onnx_input_shape(model) -> list[int | None]:
    """The first graph input's shape; dynamic dimensions as None."""
    graph_inputs = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in graph_inputs)
    dims = inp.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]


def _probe_batch(shape: list[int | None], spec: ModelSpec) -> np.ndarray:
    dims = [2] + [d or spec.input_size or 224 for d in shape[1:]]
    return np.random.default_rng(0).random(dims, dtype=np.float32)


def load_onnx_model(path: Path, spec: ModelSpec) -> LoadedNetwork:
    onnx = require("onnx", "onnx")
    ort = require("onnxruntime", "onnx")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx raises its own error types and protobuf's DecodeError
        raise ModelFormatError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    shape = onnx_input_shape(proto)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run_ort(x: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: x})[0]

    notes = [f"ONNX input shape {shape}"]
    found = input_layout(shape)
    try:
        onnx2torch = require("onnx2torch", "onnx")
        net = onnx2torch.convert(proto).eval()
        probe = _probe_batch(shape, spec)
        with torch.no_grad():
            ours = first_tensor(net(torch.from_numpy(probe))).numpy()
        theirs = run_ort(probe)
        diff = float(np.abs(ours - theirs).max())
        if not diff <= AGREEMENT_ATOL * max(1.0, float(np.abs(theirs).max())):
            raise ModelFormatError(f"converted model disagrees with onnxruntime by {diff:.2g}")
        notes.append(f"converted with onnx2torch; agrees with onnxruntime within {diff:.1e}")
        return LoadedNetwork(net, "onnx", notes=notes, **found)
    except ModelFormatError as exc:
        reason = str(exc)
    except Exception as exc:  # onnx2torch raises NotImplementedError and others for unsupported operators
        reason = f"onnx2torch cannot convert it ({type(exc).__name__}: {str(exc)[:200]})"
    notes.append(f"{reason}: running in onnxruntime as a black box (gradient-free maps only)")
    return LoadedNetwork(BlackBox(run_ort), "onnx", gradients=False, hookable=False, notes=notes, **found)


def input_layout(shape: list[int | None]) -> dict:
    """input_size, channels and layout read off a 4-D input shape with 1 or 3 channels."""
    if len(shape) != 4:
        return {}
    if shape[1] in (1, 3):
        return {"channels": shape[1], "layout": "NCHW", "input_size": shape[2]}
    if shape[3] in (1, 3):
        return {"channels": shape[3], "layout": "NHWC", "input_size": shape[1]}
    return {}
