"""`make default-model` trains the model that ships: the Makefile's training command and the shipped
checkpoint's recorded recipe (its config and how its validation split was drawn) agree."""

from __future__ import annotations

import shlex
from pathlib import Path

from tumorlens.models.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src/tumorlens/assets/default_model.pt"
NOT_RECIPE = {"data", "out", "split"}  # where it reads and writes, not what it learns


def makefile_train_args() -> list[str]:
    """The arguments of the `tumorlens train` line of the default-model target (continuations joined)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    recipe = text.split("\ndefault-model:", 1)[1]
    line = next(l for l in recipe.splitlines() if "tumorlens train" in l)
    return shlex.split(line.split("tumorlens train", 1)[1])


def parse_flags(args: list[str]) -> dict[str, str | bool]:
    """{"lr": "1e-3", "class_weights": False, ...}: `--name value`, `--flag`, `--no-flag`."""
    flags, i = {}, 0
    while i < len(args):
        name = args[i][2:].replace("-", "_")
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            flags[name], i = args[i + 1], i + 2
        else:
            flags[name.removeprefix("no_")], i = not name.startswith("no_"), i + 1
    return flags


def test_makefile_trains_the_shipped_recipe_on_its_split():
    provenance = read_checkpoint(SHIPPED)["provenance"]
    recorded = provenance["config"]
    flags = parse_flags(makefile_train_args())
    compared = 0
    for name, value in flags.items():
        if name in NOT_RECIPE or name not in recorded:
            continue
        want = recorded[name]
        got = value if isinstance(value, bool) else type(want)(value) if want is not None else value
        assert got == want, f"Makefile --{name.replace('_', '-')} {value!r}, shipped model trained with {want!r}"
        compared += 1
    assert compared >= 15, f"only {compared} of the Makefile's flags were found in the checkpoint's recipe"
    # a split by slice is what --val-grouping none draws; the trainer's default groups near twins
    by_slice = flags.get("val_grouping", "near-duplicates") == "none"
    assert by_slice == (provenance["split_method"] == "stratified"), (
        f"the shipped model's validation split is {provenance['split_method']!r}; "
        f"the Makefile draws {'a slice split' if by_slice else 'a near-duplicate-grouped split'}")
