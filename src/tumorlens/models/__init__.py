from tumorlens.models.checkpoint import CheckpointError, TumorModel, save_checkpoint
from tumorlens.models.checkpoint import load_model as load_checkpoint
from tumorlens.models.loading import load_model
from tumorlens.models.registry import ARCHITECTURES, architecture, build_model
from tumorlens.models.spec import ModelSpec, read_spec

__all__ = ["ARCHITECTURES", "CheckpointError", "ModelSpec", "TumorModel", "architecture", "build_model", "load_checkpoint",
           "load_model", "read_spec", "save_checkpoint"]
