"""`make default-model` trains the model that ships: the Makefile's training command, read by the
command line's own parser (so a trainer default counts too), and the shipped checkpoint's recorded
recipe (its config and how its validation split was drawn) agree."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from tumorlens.assets import default_model_path
from tumorlens.cli import app
from tumorlens.data.sources import parse_class_map
from tumorlens.models.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# where it reads, writes and runs, not what it learns
NOT_RECIPE = {"data", "out", "devices", "num_nodes", "resume", "trust_code"}
AS_RECORDED = {"class_map": parse_class_map}  # what `tumorlens train` does to a value before recording it


def makefile_train_args() -> list[str]:
    """The arguments of the `tumorlens train` line of the default-model target (continuations joined)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    recipe = text.split("\ndefault-model:", 1)[1]
    line = next(l for l in recipe.splitlines() if "tumorlens train" in l)
    return shlex.split(line.split("tumorlens train", 1)[1])


def makefile_train_options() -> dict:
    """Every option of that command, defaults included, as `tumorlens train` parses them."""
    train = typer.main.get_command(app).get_command(None, "train")
    return train.make_context("train", makefile_train_args()).params


def test_makefile_trains_the_shipped_recipe_on_its_split():
    provenance = read_checkpoint(default_model_path())["provenance"]
    recorded = provenance["config"]
    options = makefile_train_options()
    compared = 0
    for name, value in options.items():
        if name in NOT_RECIPE or name not in recorded:  # a checkpoint older than the option lacks it
            continue
        value = AS_RECORDED.get(name, lambda v: v)(value)
        assert value == recorded[name], (
            f"make default-model trains with {name}={value!r}, the shipped model with {recorded[name]!r}")
        compared += 1
    assert compared >= 25, f"only {compared} of the command's options were found in the checkpoint's recipe"
    # a split by slice is what --val-grouping none draws; the trainer's default groups near twins
    by_slice = options["val_grouping"] == "none"
    assert by_slice == (provenance["split_method"] == "stratified"), (
        f"the shipped model's validation split is {provenance['split_method']!r}; "
        f"the Makefile draws {'a slice split' if by_slice else 'a near-duplicate-grouped split'}")
