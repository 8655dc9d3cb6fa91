"""How reliably the spec check (audit/spec_check.py) tells a right spec from a wrong one, over training
seeds, on the network tests/test_model_formats.py trains (its SmallNet, phantoms at 48 px, RGB + ImageNet
normalisation). Per seed: test accuracy with the right spec and any warning it raises (should be none);
the warnings for a wrong normalisation (minus1to1) and for a permuted class list (outputs 2 and 3 swapped).

    HF_HUB_OFFLINE=1 python benchmarks/bench_spec_check_seeds.py --seeds 6 --epochs 15 --lr 1e-3 --n-train 240
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_model_formats as T  # noqa: E402  (the test's network, spec and phantoms)

from tumorlens.audit.spec_check import check_spec  # noqa: E402
from tumorlens.data.synthetic import make_phantoms  # noqa: E402
from tumorlens.evaluation.inference import truth_indices  # noqa: E402
from tumorlens.models.loading import load_model  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-train", type=int, default=240)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "smallnet.py").write_text(T.MODEL_FILE)
        spec = importlib.util.spec_from_file_location("smallnet_bench", Path(tmp) / "smallnet.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    test = make_phantoms(32, size=T.SIZE, seed=99)
    print("| seed | accuracy, right spec | warnings, right spec | wrong normalisation: warned, best | "
          "permuted classes: warned, accuracy declared / matched |")
    print("|---|---|---|---|---|")
    for seed in range(args.seeds):
        net = T.train_smallnet(module.SmallNet, seed, args.epochs, args.lr, args.n_train)
        results = {}
        for name, keys in (("right", T.SPEC), ("wrong", dict(T.SPEC, normalize="minus1to1")),
                           ("permuted", dict(T.SPEC, classes=[T.CLASSES[i] for i in (0, 1, 3, 2)]))):
            model = load_model(net, **keys)
            results[name] = check_spec(model, test, truth_indices(model, test))
        norm = [w for w in results["wrong"]["warnings"] if w["kind"] == "normalize"]
        perm = [w for w in results["permuted"]["warnings"] if w["kind"] == "class_order"]
        print(f"| {seed} | {results['right']['declared_accuracy']:.2f} | "
              f"{[w['kind'] for w in results['right']['warnings']] or 'none'} | "
              f"{'yes, ' + norm[0]['best'] if norm else 'no'} | "
              f"{'yes' if perm else 'no'}, {results['permuted']['declared_accuracy']:.2f} / "
              f"{perm[0]['best_accuracy'] if perm else float('nan'):.2f} |")


if __name__ == "__main__":
    main()
