"""Model-randomisation sanity check (Adebayo et al., "Sanity checks for saliency maps", 2018).

The weights are re-initialised layer by layer from the top (classifier first, then ever deeper:
cascading randomisation) and the heatmaps recomputed for the same images and classes. A map that
explains the model must change as the model is destroyed; one that stays the same shows the
image (edges, bright spots), not the decision. Per step: Spearman rank correlation and SSIM
(scikit-image) between the original and the randomised maps, averaged over images.

A method fails when, with every layer randomised, its maps still correlate with the originals
(mean Spearman >= MAX_SPEARMAN) or still look alike (mean SSIM >= MAX_SSIM).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from tumorlens.models.checkpoint import TumorModel
from tumorlens.seeding import seeded

MAX_SPEARMAN = 0.5
MAX_SSIM = 0.7
MAX_STEPS = 4

# (model, preprocessed input (N,1,S,S), targets (N,)) -> heatmaps (N,S,S) in [0, 1]
ExplainFn = Callable[[TumorModel, torch.Tensor, np.ndarray], np.ndarray]


@dataclass
class SanityResult:
    method: str
    steps: list[dict] = field(default_factory=list)  # layers_randomised, top_layer_reached, spearman, ssim
    passed: bool = False
    final_spearman: float = float("nan")
    final_ssim: float = float("nan")
    message: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def randomisable_layers(net: nn.Module) -> list[str]:
    """Names of modules that own weights and can re-initialise them, in registration order
    (input to output for the architectures in the registry)."""
    names = []
    for name, module in net.named_modules():
        own = list(module.parameters(recurse=False))
        if own and hasattr(module, "reset_parameters"):
            names.append(name)
    return names


def _similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a = np.nan_to_num(np.asarray(a, np.float64))
    b = np.nan_to_num(np.asarray(b, np.float64))
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        rho = 1.0 if np.array_equal(a, b) else 0.0  # a constant map carries no ranking to agree with
    else:
        rho = float(spearmanr(a.ravel(), b.ravel()).statistic)
    ssim = float(structural_similarity(a, b, data_range=1.0))
    return rho, ssim


def cascading_randomisation(
    model: TumorModel,
    x: torch.Tensor,
    targets: np.ndarray,
    explain_fn: ExplainFn,
    method: str = "",
    max_steps: int = MAX_STEPS,
    seed: int = 0,
    original: np.ndarray | None = None,
    progress=None,
) -> SanityResult:
    """Run the check on a few images (x, already preprocessed). `original` may pass the heatmaps
    of the intact model if already computed."""
    targets = np.asarray(targets)
    if original is None:
        original = explain_fn(model, x, targets)
    layers = randomisable_layers(model.net)[::-1]  # top (output) first
    if not layers:
        return SanityResult(method, message="the model has no layers to randomise")
    cuts = sorted(set(np.linspace(1, len(layers), min(max_steps, len(layers))).round().astype(int)))
    net = copy.deepcopy(model.net)
    rand_model = dataclasses.replace(model, net=net)
    modules = dict(net.named_modules())
    done = 0
    steps = []
    with seeded(seed):  # re-initialisation draws from torch's global generator
        for cut in cuts:
            for name in layers[done:cut]:
                modules[name].reset_parameters()
            done = cut
            net.eval()
            maps = explain_fn(rand_model, x, targets)
            sims = [_similarity(o, r) for o, r in zip(original, maps)]
            steps.append({
                "layers_randomised": cut,
                "of_layers": len(layers),
                "top_layer_reached": layers[cut - 1],
                "spearman": float(np.mean([s[0] for s in sims])),
                "ssim": float(np.mean([s[1] for s in sims])),
            })
            if progress is not None:
                progress(1)
    final = steps[-1]
    passed = final["spearman"] < MAX_SPEARMAN and final["ssim"] < MAX_SSIM
    verdict = "passed" if passed else "FAILED"
    message = (f"{method or 'method'} {verdict} the model-randomisation check: with all {len(layers)} layers "
               f"re-initialised, rank correlation with the original maps is {final['spearman']:.2f} "
               f"(limit {MAX_SPEARMAN}) and SSIM {final['ssim']:.2f} (limit {MAX_SSIM})")
    if not passed:
        message += "; its maps do not depend on what the model learned"
    return SanityResult(method, steps, passed, final["spearman"], final["ssim"], message)
