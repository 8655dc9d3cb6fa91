"""ONNX models: converted to a torch module with onnx2torch, so that every method (gradients, CAM
hooks) runs on them, and checked against onnxruntime's outputs on a random batch when loaded; a
model the converter cannot handle (or whose conversion disagrees) runs in onnxruntime as a black
box, with the reason in the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tumorlens.models.loaded import LoadedNetwork, ModelFormatError, require
from tumorlens.models.spec import ModelSpec
from tumorlens.models.spec_input import BlackBox, first_tensor

CONVERTER_OPSET = 17
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
        proto = constants_as_initializers(proto)
        try:
            net = onnx2torch.convert(proto).eval()
        except NotImplementedError:
            # onnx2torch knows operators up to opset 17 or so; torch's newer exporters write later
            # opsets. onnx's own version converter brings the graph down when its operators allow.
            from onnx import version_converter

            net = onnx2torch.convert(version_converter.convert_version(proto, CONVERTER_OPSET)).eval()
            notes.append(f"converted down to opset {CONVERTER_OPSET} for onnx2torch")
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


def constants_as_initializers(proto):
    """A copy whose Constant nodes, and Identity nodes of an initializer, are graph initializers
    instead. torch's exporters write folded weights that way; onnx2torch reads a convolution's
    weights only from initializers (written by hand: neither onnx nor onnx2torch offers this rewrite)."""
    import copy

    proto = copy.deepcopy(proto)
    graph = proto.graph
    known = {t.name: t for t in graph.initializer}
    keep = []
    for node in graph.node:
        tensor = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if node.op_type == "Identity" and len(node.input) == 1 and node.input[0] in known:
            tensor = copy.deepcopy(known[node.input[0]])
        elif node.op_type != "Constant":
            tensor = None
        if tensor is not None and len(node.output) == 1:
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            known[tensor.name] = tensor
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return proto


def input_layout(shape: list[int | None]) -> dict:
    """input_size, channels and layout read off a 4-D input shape with 1 or 3 channels."""
    if len(shape) != 4:
        return {}
    if shape[1] in (1, 3):
        return {"channels": shape[1], "layout": "NCHW", "input_size": shape[2]}
    if shape[3] in (1, 3):
        return {"channels": shape[3], "layout": "NHWC", "input_size": shape[1]}
    return {}
