"""The augmentation presets by name, apart from augment.py so the CLI can list them without
importing torch at start-up."""

from __future__ import annotations

from tumorlens.errors import TumorlensError

# name -> what it does; the CLI help and the model card read these, so they are said once, here.
AUGMENT_PRESETS = {
    "none": "no augmentation",
    "flip": "left-right flips only",
    "mri": "left-right flips, rotation +-10 deg, shift 5 %, zoom 7 %, brightness and contrast 15 %",
    # tumorlens.training.acquisition builds the TorchIO part
    "acquisition": "the mri preset, plus TorchIO acquisition transforms per image before the intensity step: "
    "gamma 0.55-1.8 (p .5), bias field (p .3), noise (p .3), blur (p .2), down-sampling x1.5-3.5 (p .2), "
    "ghosting (p .15), motion (p .15), k-space spike (p .1)",
    "acquisition_window": "the acquisition preset, plus a random display window (p .3): its low and high ends "
    "each moved by up to 0.25 of the range, saturating part of it as another export window/level does",
}

# presets whose per-image part runs on the display image in the data loader, not on the batch
PER_IMAGE_PRESETS = {"acquisition", "acquisition_window"}


def augment_preset(name: str | bool) -> str:
    """A preset name; True/False (older checkpoints) mean "mri"/"none"."""
    if isinstance(name, bool):
        return "mri" if name else "none"
    if name not in AUGMENT_PRESETS:
        raise TumorlensError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENT_PRESETS)}")
    return name
