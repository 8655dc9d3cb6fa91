"""Data sources, preprocessing, splits and dataset checks: everything before a model."""

from tumorlens.data.checks import check_dataset
from tumorlens.data.errors import DatasetError
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.sample import Sample, SampleSet
from tumorlens.data.sources import open_dataset
from tumorlens.data.synthetic import make_phantoms

__all__ = ["DatasetError", "PreprocessRecipe", "Sample", "SampleSet", "check_dataset", "make_phantoms", "open_dataset"]
