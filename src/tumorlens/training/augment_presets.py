"""The augmentation presets by name, apart from augment.py so the CLI can list them without
importing torch at start-up."""

from __future__ import annotations

# name -> what it does; the CLI help and the model card read these, so they are said once, here.
AUGMENT_PRESETS = {
    "none": "no augmentation",
    "flip": "left-right flips only",
    "mri": "left-right flips, rotation +-10 deg, shift 5 %, zoom 7 %, brightness and contrast 15 %",
}


def augment_preset(name: str | bool) -> str:
    """A preset name; True/False (older checkpoints) mean "mri"/"none"."""
    if isinstance(name, bool):
        return "mri" if name else "none"
    if name not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENT_PRESETS)}")
    return name
