from tumorlens.models.checkpoint import CheckpointError, TumorModel, load_model, save_checkpoint
from tumorlens.models.registry import ARCHITECTURES, architecture, build_model

__all__ = ["ARCHITECTURES", "CheckpointError", "TumorModel", "architecture", "build_model", "load_model", "save_checkpoint"]
