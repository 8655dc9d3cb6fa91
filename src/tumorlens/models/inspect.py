"""What a model file is, for `tumorlens model inspect`: format, input, outputs, CAM layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tumorlens.errors import TumorlensError
from tumorlens.models.formats import sniff_format
from tumorlens.models.loading import cam_candidates, describe, load_model

PROBE_SIZE = 224  # the input side tried when neither the file nor the user states one


def inspect_model(path: str | Path, **options: Any) -> dict[str, Any]:
    """Everything tumorlens can tell about a model file without a spec; where loading needs more
    (an architecture, trust), `problem` says what to pass."""
    fmt = sniff_format(path)
    found: dict[str, Any] = {"format": fmt.name, "description": fmt.description}
    notes = []
    try:
        if fmt.load is None:
            model = load_model(path)
        else:
            try:
                model = load_model(path, name_outputs=True, **options)
            except TumorlensError as exc:
                if "input size" not in str(exc):
                    raise
                model = load_model(path, name_outputs=True, **{**options, "input_size": PROBE_SIZE})
                notes.append(f"the file does not state its input size: probed at {PROBE_SIZE} px")
    except TumorlensError as exc:
        found["problem"] = str(exc)
        return found
    d = describe(model)
    size = model.recipe.size
    found.update({"classes": d["classes"] if fmt.load is None or options.get("classes") else None,
                  "num_outputs": model.num_classes, "cam_layer": d["cam_layer"], "capabilities": d["capabilities"],
                  "notes": d["notes"] + notes})
    if fmt.load is not None:
        spec = d["spec"]
        shape = (1, size, size, spec["channels"]) if spec["layout"] == "NHWC" else (1, spec["channels"], size, size)
        found.update({"input_shape": shape, "input_size": size, "channels": spec["channels"], "layout": spec["layout"],
                      "outputs": spec["outputs"]})
        if _looks_softmaxed(model):
            found["outputs"] = "probabilities"
            found["notes"].append("its outputs are non-negative and sum to 1: written as outputs = probabilities")
        if model.hookable or model.cam_layer:
            found["cam_candidates"] = cam_candidates(model.net, size)
    else:
        found["input_shape"] = (1, 1, size, size)
    return found


def _looks_softmaxed(model) -> bool:
    """Whether the wrapped network's own outputs look like probabilities on a few probe images."""
    import torch

    from tumorlens.models.spec_input import first_tensor

    size = model.recipe.size
    with torch.no_grad():
        x = model.net.feed(torch.rand(4, 1, size, size, generator=torch.Generator().manual_seed(0)))
        out = first_tensor(model.net.model(x)).float()
    return bool((out >= 0).all() and torch.allclose(out.sum(1), torch.ones(len(out)), atol=1e-3))
