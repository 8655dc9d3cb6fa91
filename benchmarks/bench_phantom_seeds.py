"""Seed sweep of the phantom models the audit proves itself on (issue 25): how often does each shortcut
sub-test, the strategy clusters and the atlas fail a clean model, and how often do they catch a
planted shortcut?

Per training seed s (phantoms and torch both seeded by s; the audited phantoms by --test-seed, or
by 99 + s with --vary-test), the models and audits of tests/test_audit_proves_itself.py and
tests/test_audit_planted_shortcut.py, trained by tests/phantom_models.py (the same code):
- clean:       trained on clean phantoms, audited on clean phantoms (test_clean_model_passes);
- clean_all:   the same model, audited with the planted marker on every slice (clean model, marker everywhere);
- marker:      trained and audited with make_phantoms' class-encoding corner marker (test_shortcut_model_is_flagged);
- planted_all: trained with the marker on meningioma's slices, audited with it on every slice;
- planted_class: the same model, audited with the marker on meningioma's slices only.
The audit runs with the tests' configuration; its data checks are skipped (no effect on these
checks on phantoms: nothing is leaked) to save time.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_phantom_seeds.py --seeds 20 --out runs/phantom_seeds.json

writes one JSON line per (seed, audit) (resumable: seeds already in --out are skipped) and prints the
table (`--table-only` reprints it from --out). One torch thread (the tests' setting).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

VARIANTS = ("clean", "clean_all", "marker", "planted_all", "planted_class")
EXPECT_FAIL = {"clean": False, "clean_all": False, "marker": True, "planted_all": True, "planted_class": True}
SUBTESTS = ("brain_blanked_accuracy", "decision_invariance", "silhouette", "background_removed")


def record(variant: str, seed: int, s: dict, out: Path, seconds: float) -> dict:
    import pandas as pd

    from phantom_models import MARKED

    sc = s["shortcut"]
    df = pd.read_csv(out / "gradcam_analysis.csv")
    verdict = {c["name"]: c["status"] for c in s["verdict"]["checks"]}
    clusters = [{k: c[k] for k in ("class", "n", "classes", "flagged", "energy_outside_brain")}
                for c in s["strategies"]["clusters"]]
    by_pred = s["atlas"]["by_predicted_class"]
    return {
        "variant": variant, "seed": seed, "seconds": round(seconds, 1),
        "accuracy": s["classification"]["all"]["accuracy"],
        "verdict": verdict,
        "shortcut_statuses": sc["statuses"],
        "background_removed": sc["background_removed"],
        "kappa_blanked": sc["decision_invariance"]["kappa"],
        "kappa_silhouette": sc["silhouette"]["decision_invariance"]["kappa"],
        "blanked_above_chance": sc["blanked_above_chance"],
        "clusters": clusters,
        "marked_hot_spot_zone": by_pred.get(MARKED, {}).get("hot_spot", {}).get("zone"),
        "largest_class_hot_spot_zone": by_pred[max(by_pred, key=lambda k: by_pred[k]["n"])]["hot_spot"]["zone"],
        "off_target": s["attention"]["all"]["share_correct_focused_outside_brain"],
        "cf_delta_drop": (s.get("counterfactuals") or {}).get("correct", {}).get("delta_drop_mean"),
        # the raw decisions, so that other decision rules can be scored on the same models
        "truth": df["truth"].tolist(), "pred": df["prediction"].tolist(),
        "pred_blanked": df["prediction_brain_blanked"].tolist(),
        "pred_silhouette": df["prediction_silhouette"].tolist(),
        "pred_background_removed": df["prediction_background_removed"].tolist(),
    }


def run_seed(seed: int, test_seed: int, epochs: int, n_train: int, variants, old_recipe: bool = False) -> list[dict]:
    import phantom_models as P
    from tumorlens.audit.planted import mark_samples

    def train(samples):
        if old_recipe:  # before issue 25: constant 3e-3
            return P.train(samples, epochs, seed, lr=3e-3, one_cycle=False)
        return P.train(samples, epochs, seed)

    rows = []
    need = set(variants)
    models = {}
    if need & {"clean", "clean_all"}:
        models["clean"] = train(P.training_set(None, seed, n_train))
    if "marker" in need:
        models["marker"] = train(P.training_set("marker", seed, n_train))
    if need & {"planted_all", "planted_class"}:
        models["planted"] = train(mark_samples(P.training_set(None, seed, n_train), P.MARKED))
    tests = {
        "clean": (models.get("clean"), lambda: P.test_set(None, test_seed)),
        "clean_all": (models.get("clean"), lambda: mark_samples(P.test_set(None, test_seed))),
        "marker": (models.get("marker"), lambda: P.test_set("marker", test_seed)),
        "planted_all": (models.get("planted"), lambda: mark_samples(P.test_set(None, test_seed))),
        "planted_class": (models.get("planted"), lambda: mark_samples(P.test_set(None, test_seed), P.MARKED)),
    }
    for v in variants:
        model, make = tests[v]
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            s = P.audit(model, make(), d, data_checks=False,
                        counterfactuals=v in ("clean", "marker"))  # as the two test files configure it
            rows.append(record(v, seed, s, Path(d), time.perf_counter() - t0))
        rows[-1]["flat_background"] = flat_background_rule(model, make(), rows[-1])
    return rows


def flat_background_rule(model, samples, row: dict) -> dict:
    """The background test as it was before issue 25: outside the head set to one flat grey, and a
    class failing when it loses >= 50 % of its calls (>= 10 calls), warning at >= 20 %, no test."""
    import numpy as np

    from tumorlens.anatomy.regions import segment_regions
    from tumorlens.audit.counterfactuals import background_value, keep_only
    from tumorlens.audit.forward import probabilities01

    display = np.stack([model.recipe.display(s.image) for s in samples.samples])
    edited = []
    for d in display:
        r = segment_regions(d)
        edited.append(keep_only(d, r.head, background_value(d, r.background)))
    full = probabilities01(model, display).argmax(1)
    flat = probabilities01(model, np.stack(edited)).argmax(1)
    lost = {model.classes[c]: float(np.mean(flat[full == c] != c)) for c in range(len(model.classes))
            if np.sum(full == c) >= 10}
    worst = max(lost.values()) if lost else 0.0
    status = "fail" if worst >= 0.5 else ("warn" if worst >= 0.2 else "pass")
    others = [v for k, v in row["shortcut_statuses"].items() if k != "background_removed"]
    check = "fail" if "fail" in others + [status] else ("warn" if "warn" in others + [status] else "pass")
    return {"status": status, "lost_by_class": lost, "shortcut_check": check,
            "consistent_with_audit": [model.classes[i] for i in full] == row["pred"]}


def first_flagged_class(r: dict) -> str | None:
    """The class of the first flagged cluster in the audit's order (most attention outside the brain
    first; rows recorded before that order was introduced are sorted here the same way)."""
    fl = sorted((c for c in r["clusters"] if c["flagged"]), key=lambda c: -c["energy_outside_brain"])
    return fl[0]["class"] if fl else None


def clean_clusters_below_marker(r: dict, rows: list[dict]) -> bool | None:
    """tests/test_audit_planted_shortcut.py's clean-model assertion: every cluster of >= 8 images of
    the clean model looks at least 0.1 less outside the brain than the same seed's marker cluster."""
    planted = next((x for x in rows if x["seed"] == r["seed"] and x["variant"] == "planted_all"), None)
    fl = [c for c in planted["clusters"] if c["flagged"]] if planted else []
    if not fl:
        return None
    top = max(c["energy_outside_brain"] for c in fl)
    return all(c["energy_outside_brain"] < top - 0.1 for c in r["clusters"] if c["n"] >= 8)


def table(rows: list[dict]) -> str:
    from phantom_models import MARKED

    # "before / after": the flat-grey background test without a significance test, and the audit's own
    lines = ["| audit | seeds | shortcut check fails (before / after) | "
             + " | ".join(f"{t} fails" for t in SUBTESTS[:-1]) + " | background_removed fails (before / after)"
             + " | strategies: a flagged cluster | first flagged is " + MARKED + " | a flagged cluster of >= 8 | "
             "atlas hot spot of " + MARKED + " in background | atlas hot spot of the largest predicted class in background | "
             "attention fails | shortcut warns | a check other than robustness fails | robustness fails | "
             "accuracy > 0.5 | background removed: worst class is " + MARKED + " | "
             "clean clusters (>= 8) look 0.1 less outside than the marker's |",
             "|---|---|---|" + "---|" * len(SUBTESTS) + "---|---|---|---|---|---|" + "---|" * 6]
    for v in VARIANTS:
        rs = [r for r in rows if r["variant"] == v]
        if not rs:
            continue
        n = len(rs)

        def count(f):
            return f"{sum(bool(f(r)) for r in rs)}/{n}"

        cells = [count(lambda r: r["flat_background"]["shortcut_check"] == "fail")
                 + " / " + count(lambda r: r["verdict"]["shortcut"] == "fail")]
        cells += [count(lambda r, t=t: r["shortcut_statuses"].get(t) == "fail") for t in SUBTESTS[:-1]]
        cells += [count(lambda r: r["flat_background"]["status"] == "fail") + " / "
                  + count(lambda r: r["shortcut_statuses"]["background_removed"] == "fail")]
        cells += [count(lambda r: any(c["flagged"] for c in r["clusters"])),
                  count(lambda r: first_flagged_class(r) == MARKED),
                  count(lambda r: any(c["flagged"] and c["n"] >= 8 for c in r["clusters"])),
                  count(lambda r: r["marked_hot_spot_zone"] == "background"),
                  count(lambda r: r["largest_class_hot_spot_zone"] == "background"),
                  count(lambda r: r["verdict"]["attention"] == "fail"),
                  count(lambda r: r["verdict"]["shortcut"] == "warn"),
                  count(lambda r: [k for k, v in r["verdict"].items() if v == "fail" and k != "robustness"]),
                  count(lambda r: r["verdict"].get("robustness") == "fail"),
                  count(lambda r: r["accuracy"] > 0.5),
                  count(lambda r: r["background_removed"]["worst_class"] == MARKED),
                  count(lambda r: clean_clusters_below_marker(r, rows)) if v == "clean_all" else "-"]
        lines.append(f"| {v} ({'planted: should fail' if EXPECT_FAIL[v] else 'clean: should pass'}) | {n} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--test-seed", type=int, default=None, help="audited phantoms' seed (default: the tests' 99)")
    ap.add_argument("--vary-test", action="store_true", help="audited phantoms seeded 99 + training seed")
    ap.add_argument("--epochs", type=int, default=None, help="default: phantom_models.EPOCHS")
    ap.add_argument("--n-train", type=int, default=None, help="default: phantom_models.N_TRAIN")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--old-recipe", action="store_true",
                    help="train as the tests did before issue 25: 12 epochs at a constant 3e-3 (with --epochs 12)")
    ap.add_argument("--out", type=Path, default=Path("runs/phantom_seeds.jsonl"))
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()

    import phantom_models as P

    rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.table_only:
        import torch

        torch.set_num_threads(1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        done = {r["seed"] for r in rows}
        variants = [v for v in args.variants.split(",") if v]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if seed in done:
                continue
            t0 = time.perf_counter()
            test_seed = 99 + seed if args.vary_test else (args.test_seed if args.test_seed is not None else P.TEST_SEED)
            new = run_seed(seed, test_seed, args.epochs or P.EPOCHS, args.n_train or P.N_TRAIN, variants, args.old_recipe)
            with args.out.open("a") as f:
                for r in new:
                    f.write(json.dumps(r) + "\n")
            rows += new
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s; "
                  + "; ".join(f"{r['variant']} {r['verdict']['shortcut']} {r['shortcut_statuses']}" for r in new),
                  flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
