"""What an audit run is asked to do; kept free of heavy imports so the command line starts fast."""

from __future__ import annotations

from dataclasses import dataclass

from tumorlens.errors import TumorlensError
from tumorlens.explain.methods import LOCALISATION_METHOD, method_spec, method_unavailable, primary_method

# The per-image map (gradcam_analysis.csv, attention, atlas, strategies): the localisation map chosen
# on the blob control (explain/methods.py), not Grad-CAM, whose 7 x 7 last stage cannot point at a tumor.
PRIMARY_METHOD = LOCALISATION_METHOD
PRIMARY_LABEL = method_spec(PRIMARY_METHOD).library_name  # how texts name it ("HiResCAM")
DEFAULT_METHODS = ("gradcam", "gradcam++", "saliency", "random")

# Images per model pass, at most, whatever --batch-size asks: a pass's activations grow with its
# images, and the process keeps the pages its largest pass touched (memory.py), so the pass size,
# not the dataset, sets the audit's peak. Measured with the default model (EfficientNet-Lite0,
# 224 px; benchmarks/RESULTS.md, `bench_data_memory.py passes`): a forward pass adds 0.3 GB at 16
# images, 0.6 GB at 32, 1.2 GB at 64 (the explainer comparison's old pass); a backward pass of an
# explainer more (the localisation map 0.4 GB at 8, 0.9 GB at 32; Saliency 0.8 GB at 8, 1.6 GB at
# 16). The audit's numbers do not depend on the pass size.
MAX_FORWARD_IMAGES = 16
MAX_BACKWARD_IMAGES = 8


class AuditError(TumorlensError):
    """The audit cannot run as asked (no images, labels the model does not know...)."""


@dataclass
class AuditConfig:
    methods: tuple[str, ...] = DEFAULT_METHODS
    limit: int | None = None
    batch_size: int = 32
    compare_n: int = 16  # images for the explainer comparison and deletion/insertion curves
    sanity_n: int = 4  # images for the model-randomisation check
    # images of the comparison subset also scored by ROAD (noisy-imputation removal, at
    # faithfulness.AUDIT_ROAD_PERCENTILES);
    # each costs sparse linear solves of ~1-10 s per level, so few (0: off)
    road_n: int = 4
    gallery_n: int = 8
    data_checks: bool = True
    # audited images the input check (tumorlens.inputcheck) finds unlike brain MRI are counted and shown
    # in the report; True leaves them out of the audit as well
    exclude_unlike_mri: bool = False
    # the model's training data, to find audited images it has seen: "auto" (hashes stored in the
    # checkpoint, else the folder it names), "stored" (stored hashes only), "none", or a folder
    training_data: str | None = "auto"
    counterfactuals: bool = True
    # images for the robustness check (a seeded, class-stratified subset; None: all, 0: off). 14
    # shifts x 512 images is ~60 s of model passes on 2 cores, keeping the Kaggle audit within 5 min
    robustness_n: int | None = 512
    seed: int = 0
    progress: bool = True
    # slices without an expert tumor mask get the bundled segmenter's (audit/checks/tumor_masks.py), so
    # pointing game, energy in the tumor and counterfactuals run on Kaggle too
    predicted_masks: bool = True
    segmenter: str | None = None  # a segmenter file; None: the bundled one
    figshare_reference: str | None = None  # a figshare folder: agreement of predicted and expert masks on shared slices
    # the per-image map: the localisation map, or a gradient-free one for a model without CAM layers
    # (fit_to_model sets it; see explain.methods.primary_method)
    primary: str = PRIMARY_METHOD
    # --ray: run the per-image work on a Ray cluster ('auto', or its address; None: in this process),
    # with this many workers (None: one per CPU of the cluster)
    ray: str | None = None
    ray_workers: int | None = None

    @property
    def forward_batch(self) -> int:
        """Images per forward pass: --batch-size, at most MAX_FORWARD_IMAGES."""
        return min(self.batch_size, MAX_FORWARD_IMAGES)

    def explain_batch(self, method: str) -> int:
        """Images per pass of an explainer: fewer for those that run backward passes."""
        cap = MAX_BACKWARD_IMAGES if method_spec(method).needs_gradients else MAX_FORWARD_IMAGES
        return min(self.batch_size, cap)

    def __post_init__(self) -> None:
        methods = [m.strip().lower() for m in self.methods if m and m.strip()]
        if self.primary not in methods:
            methods.insert(0, self.primary)  # the per-image map is always compared too
        self.methods = tuple(dict.fromkeys(methods))
        if self.batch_size < 1:
            raise AuditError(f"batch size must be at least 1, got {self.batch_size}")
        if self.robustness_n is not None and self.robustness_n < 0:
            raise AuditError(f"--robustness-n must be 0 (off) or more, got {self.robustness_n}")
        if self.road_n < 0:
            raise AuditError(f"--road-n must be 0 (off) or more, got {self.road_n}")
        if self.ray_workers is not None and self.ray_workers < 1:
            raise AuditError(f"--ray-workers must be at least 1, got {self.ray_workers}")
        if self.limit is not None and self.limit < 1:
            raise AuditError(f"--limit must be at least 1, got {self.limit}")


def fit_to_model(config: AuditConfig, model) -> tuple[AuditConfig, dict[str, str]]:
    """The config with the explainers this model can serve, the primary map it can serve first, and
    {skipped method: why}. Unchanged for a model that serves everything."""
    import dataclasses

    primary = primary_method(model)
    skipped = {m: why for m in config.methods if (why := method_unavailable(model, m))}
    methods = tuple(m for m in config.methods if m not in skipped)
    if primary == config.primary and not skipped:
        return config, {}
    return dataclasses.replace(config, methods=methods, primary=primary), skipped
