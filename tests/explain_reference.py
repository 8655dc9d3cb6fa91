"""The inputs of the explainer reference fixture (tests/data/explain_reference.npz): maps computed
by the explain code before the registry refactor (commit 0ebbd05), which every later version must
reproduce. Regenerate only on purpose: `python tests/explain_reference.py` (writes the fixture);
`python tests/explain_reference.py --default-model` rewrites only the shipped model's maps, when a new
default model is shipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

FIXTURE = Path(__file__).parent / "data" / "explain_reference.npz"
SIZE = 48

# (key, method, params, targets): every registered method on a small network, the eigen_smooth
# variants (the projection path), explicit targets, and the shipped model's CAM layer (1280 channels).
CASES = [
    ("gradcam", "gradcam", {}, None),
    ("gradcam_t", "gradcam", {}, [1, 2]),
    ("gradcam_eigen", "gradcam", {"eigen_smooth": True}, None),
    ("gradcam++", "gradcam++", {}, None),
    ("gradcam++_eigen", "gradcam++", {"eigen_smooth": True}, [0, 1]),
    ("hirescam", "hirescam", {}, None),
    ("hirescam_eigen", "hirescam", {"eigen_smooth": True}, None),
    ("layercam", "layercam", {}, [2, 2]),
    ("layercam_eigen", "layercam", {"eigen_smooth": True}, None),
    ("scorecam", "scorecam", {"channel_batch": 7}, None),
    ("eigencam", "eigencam", {}, None),
    ("random", "random", {"seed": 3}, None),
    ("ig", "ig", {"steps": 4}, None),
    ("gradshap", "gradshap", {"samples": 4, "seed": 3}, [1, 0]),
    ("occlusion", "occlusion", {"window": 12, "stride": 6}, None),
    ("lime", "lime", {"samples": 24, "n_segments": 12, "seed": 3}, None),
    ("kernelshap", "kernelshap", {"samples": 24, "n_segments": 12, "seed": 3}, None),
    ("saliency", "saliency", {}, None),
    ("saliency_t", "saliency", {}, [2, 1]),
]
DEFAULT_MODEL_CASES = [("default_gradcam", "gradcam"), ("default_eigencam", "eigencam"),
                       ("default_layercam", "layercam")]


def small_net(state: dict | None = None):
    from tumorlens.models.registry import SimpleCNN

    torch.manual_seed(0)
    net = SimpleCNN(3, width=8).eval()
    if state is not None:
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return net


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, SIZE, SIZE, generator=g) * 0.3 - 1.0
    x[0, :, 10:24, 14:30] += 2.0
    x[1, :, 26:40, 8:20] += 2.0
    return x


def head_input(model) -> torch.Tensor:
    """One preprocessed head-like phantom for the shipped model."""
    size = model.recipe.size
    yy, xx = np.mgrid[:size, :size]
    head = (((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.33 * size)) ** 2 < 1).astype(np.float32)
    head = head * (0.4 + 0.2 * np.sin(xx / 7.0) * np.cos(yy / 5.0))
    head[60:90, 120:150] += 0.5
    return model.prepare([head])


def compute(net, run_default_model: bool = True) -> dict[str, np.ndarray]:
    from tumorlens.explain import explain

    x = images()
    out = {}
    for key, method, params, targets in CASES:
        ex = explain((net, "simple_cnn"), x, method, targets=targets, **params)
        out[key] = ex.heatmaps
        out[key + ":targets"] = ex.targets
    if run_default_model:
        from tumorlens.assets import default_model_path
        from tumorlens.models.checkpoint import load_model

        model = load_model(default_model_path())
        xd = head_input(model)
        for key, method in DEFAULT_MODEL_CASES:
            ex = explain(model, xd, method)
            out[key] = ex.heatmaps
            out[key + ":targets"] = ex.targets
    return out


if __name__ == "__main__":
    import sys

    # float16 halves the file; the test's tolerance (2e-3 on maps in [0, 1]) is above its rounding.
    def half(maps: dict) -> dict:
        return {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in maps.items()}

    if sys.argv[1:] == ["--default-model"]:
        # a new default model shipped: only its maps change; the small network's stay as first written
        stored = dict(np.load(FIXTURE))
        net = small_net({k.split(":", 1)[1]: v for k, v in stored.items() if k.startswith("state:")})
        stored.update(half({k: v for k, v in compute(net).items() if k.startswith("default_")}))
    else:
        net = small_net()
        stored = {**half(compute(net)), **{f"state:{k}": v.detach().numpy() for k, v in net.state_dict().items()}}
    np.savez_compressed(FIXTURE, **stored)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e3:.0f} kB, {len(stored)} arrays)")
