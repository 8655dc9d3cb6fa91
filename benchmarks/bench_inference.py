"""Inference speed of the default model: images per second at batch 64 through the whole pipeline
(decoded image -> preprocessing recipe -> model -> calibrated probabilities), and the ratio to the
bare model forward pass on ready tensors, measured in the same run.

usage: .venv/bin/python benchmarks/bench_inference.py [--images 640] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from tumorlens.assets import default_model_path
from tumorlens.data.sources import open_dataset
from tumorlens.evaluation.inference import calibrated, predict_logits
from tumorlens.models import load_model
from results import write_section

from results import KAGGLE_TESTING  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(default_model_path())
    samples = open_dataset(KAGGLE_TESTING, progress=False)
    samples = samples.subset(range(min(args.images, len(samples))))
    ready = model.prepare([s.image for s in samples.samples])

    pipeline, bare, prepare = [], [], []
    for _ in range(args.repeats):  # interleaved, so all see the same machine load
        t = time.perf_counter()
        model.prepare([s.image for s in samples.samples])
        prepare.append((time.perf_counter() - t) / len(samples) * 1e3)
        t = time.perf_counter()
        calibrated(model, predict_logits(model, samples, batch_size=64, desc="pipeline"))
        pipeline.append(len(samples) / (time.perf_counter() - t))
        t = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(ready), 64):
                model.net(ready[i : i + 64])
        bare.append(len(samples) / (time.perf_counter() - t))
    p, b = statistics.median(pipeline), statistics.median(bare)
    text = f"""Command: `.venv/bin/python benchmarks/bench_inference.py --images {len(samples)} --repeats {args.repeats}`
({time.strftime('%Y-%m-%d')}, model `{model.version}`, {model.recipe.size} px, batch 64, 2 torch threads, shared busy machine).

| | images/s (median of {args.repeats}) |
|---|---:|
| whole pipeline (decoded image -> recipe -> model -> calibrated probabilities) | {p:.1f} |
| bare model forward on ready tensors | {b:.1f} |
| ratio pipeline / bare | {p / b:.2f} |

Preprocessing alone (the recipe, one thread): {statistics.median(prepare):.2f} ms per image.
"""
    write_section("bench_inference.py", text)
    print(text)


if __name__ == "__main__":
    main()
