"""How far do the demo audit's numbers move between CPU kernel paths and thread counts? (issue 25)

Runs `tumorlens audit --demo --seed 0` (tests/test_audit_demo_reference.py's run_demo_audit, the
helper the reference fixture is written with) once per configuration, each in its own process (the
kernel variables are read when torch loads), and compares every leaf of the reference view with the
first configuration's: non-numeric leaves (statuses, chosen classes, keys) and integers must be
equal; for floats it reports the largest absolute and relative differences. The figures set the
tolerance of tests/test_audit_demo_reference.py (DEMO_ABS_TOL, DEMO_REL_TOL).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_demo_kernels.py --out runs/demo_kernels

Also compares each configuration with the stored fixture (written on another machine) when asked
(--fixture): keys listed by --ignore are left out of that comparison (parts whose behaviour changed
on purpose since the fixture was written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESTRICT_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
NO_SIMD = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
CONFIGS = {
    "default_2threads": ({}, 2),
    "default_1thread": ({}, 1),
    "avx2_1thread": (RESTRICT_AVX2, 1),
    "nosimd_2threads": (NO_SIMD, 2),
    "nosimd_1thread": (NO_SIMD, 1),
}

CHILD = """
import json, sys, tempfile
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, {tests!r})
from test_audit_demo_reference import reference_view, run_demo_audit
view = reference_view(*run_demo_audit(Path(tempfile.mkdtemp())))
view["torch_capability"] = torch.backends.cpu.get_cpu_capability()
import tumorlens
view["tumorlens_file"] = tumorlens.__file__
Path(sys.argv[2]).write_text(json.dumps(view, sort_keys=True))
"""


def leaves(view: dict) -> dict:
    out = {f"summary.{k}": v for k, v in view["summary"].items()}
    out.update({f"csv_means.{k}": v for k, v in view["csv_means"].items()})
    out["csv_rows"] = view["csv_rows"]
    for k, v in (view.get("csv_decisions") or {}).items():
        out[f"csv_decisions.{k}"] = v
    return out


def compare(a: dict, b: dict, ignore=()) -> dict:
    """Differences of two reference views: exact leaves that differ, float differences."""
    la, lb = leaves(a), leaves(b)
    exact, floats = [], []
    for k in sorted(set(la) | set(lb)):
        if any(s in k for s in ignore):
            continue
        x, y = la.get(k, "<missing>"), lb.get(k, "<missing>")
        if isinstance(x, float) and isinstance(y, (int, float)) and not isinstance(y, bool) \
                or isinstance(y, float) and isinstance(x, (int, float)) and not isinstance(x, bool):
            if math.isnan(x) and math.isnan(y):
                continue
            d = abs(x - y)
            floats.append((k, x, y, d, d / max(abs(x), abs(y)) if max(abs(x), abs(y)) > 0 else 0.0))
        elif x != y:
            exact.append((k, x, y))
    floats.sort(key=lambda t: -t[3])
    return {"exact_differ": exact, "n_floats": len(floats),
            "max_abs": floats[0][3] if floats else 0.0,
            "largest_abs": floats[:8],
            "largest_rel_among_abs_over_1": sorted([f for f in floats if max(abs(f[1]), abs(f[2])) >= 1],
                                                   key=lambda t: -t[4])[:5]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/demo_kernels"))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--fixture", type=Path, default=None, help="also compare with this reference fixture")
    ap.add_argument("--ignore", default="", help="comma-separated key parts left out of the fixture comparison")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="the checkout whose src/ and tests/ run (e.g. a `git archive` snapshot, so that edits "
                         "made in the working tree while it runs cannot mix into the comparison)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    views = {}
    for name in args.configs.split(","):
        env_extra, threads = CONFIGS[name]
        path = args.out / f"{name}.json"
        if not path.exists():
            env = {**os.environ, **env_extra, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg",
                   "PYTHONPATH": str(args.root.resolve() / "src")}
            subprocess.run([sys.executable, "-c", CHILD.format(tests=str(args.root.resolve() / "tests")), str(threads),
                            str(path.resolve())], check=True, env=env, cwd=args.root)
        views[name] = json.loads(path.read_text())
        print(f"{name}: torch capability {views[name]['torch_capability']}, {threads} thread(s), "
              f"{env_extra or 'default env'}; {views[name].get('tumorlens_file')}")
    names = list(views)
    base = views[names[0]]
    for name in names[1:]:
        c = compare(base, views[name])
        print(f"\n{names[0]} vs {name}: {len(c['exact_differ'])} exact leaves differ; {c['n_floats']} floats, "
              f"max abs diff {c['max_abs']:.3g}")
        print_differences(c)
    if args.fixture:
        ref = json.loads(args.fixture.read_text())
        ignore = [s for s in args.ignore.split(",") if s]
        for name in names:
            c = compare(ref, views[name], ignore)
            print(f"\nfixture vs {name}: {len(c['exact_differ'])} exact leaves differ; max abs diff {c['max_abs']:.3g}")
            print_differences(c)


def print_differences(c: dict) -> None:
    """The leaves that differ exactly, then the largest float differences of a compare() result."""
    for row in c["exact_differ"][:10]:
        print("  EXACT", row)
    for row in c["largest_abs"]:
        print(f"  {row[0]}: {row[1]!r} vs {row[2]!r} (abs {row[3]:.3g}, rel {row[4]:.3g})")
    for row in c["largest_rel_among_abs_over_1"]:
        print(f"  |v|>=1 {row[0]}: {row[1]!r} vs {row[2]!r} (abs {row[3]:.3g}, rel {row[4]:.3g})")


if __name__ == "__main__":
    main()
