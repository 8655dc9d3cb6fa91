"""Class names as people write them, matched to the datasets' names.

Published brain-tumor classifiers name their outputs `glioma_tumor`, `no_tumor`, `No Tumor`,
`normal`, `pituitary tumor`...; the Kaggle and figshare readers call the classes `glioma`,
`meningioma`, `notumor`, `pituitary`. A foreign model's names are matched to those by this one alias
table; anything else stays as written (and `--class-map` renames dataset classes).
"""

from __future__ import annotations

import re

CANONICAL = ("glioma", "meningioma", "notumor", "pituitary")
# written form (lower case, separators removed) -> canonical name
ALIASES = {
    "glioma": "glioma", "gliomatumor": "glioma", "gliomas": "glioma",
    "meningioma": "meningioma", "meningiomatumor": "meningioma", "meningiomas": "meningioma",
    "pituitary": "pituitary", "pituitarytumor": "pituitary", "pituitaryadenoma": "pituitary",
    "notumor": "notumor", "notumour": "notumor", "normal": "notumor", "healthy": "notumor",
    "negative": "notumor", "none": "notumor",
}


def canonical_class(name: str) -> str:
    """'No Tumor' -> 'notumor', 'glioma_tumor' -> 'glioma'; unknown names are returned unchanged."""
    key = re.sub(r"[\s_\-.]+", "", str(name).strip().lower())
    return ALIASES.get(key, str(name))


def canonical_classes(names: list[str]) -> list[str]:
    """Each name's canonical form, unless two would collide: then the names as written."""
    out = [canonical_class(n) for n in names]
    return out if len(set(out)) == len(out) else list(names)
