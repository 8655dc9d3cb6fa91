"""The registry is the one place a method is described: every list of methods is derived from it,
and a method's name is written out in at most two files under src/ (methods.py, plus at most one
list that cannot be derived, such as the audit's default selection)."""

import ast
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tumorlens.explain import explain
from tumorlens.explain.methods import (
    ALIASES,
    CAM_METHODS,
    FAST_METHODS,
    METHODS,
    ONE_PASS_METHODS,
    REGISTRY,
    ExplainError,
    gallery_order,
    method_spec,
    methods_help,
)
from tumorlens.models.registry import build_model

SRC = Path(__file__).resolve().parents[1] / "src"
REGISTRY_FILE = SRC / "tumorlens" / "explain" / "methods.py"
NAMES = set(METHODS) | set(ALIASES)


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def spelled_names(text: str) -> set[str]:
    """Names a string spells out: the whole string is one, or it lists two or more (a help text)."""
    if text.strip() in NAMES:
        return {text.strip()}
    items = {t for t in re.split(r"[\s,;:()\[\]{}|/]+", text) if t in NAMES}
    return items if len(items) >= 2 else set()


def files_spelling(src: Path = SRC) -> dict[str, set[Path]]:
    """name -> files under src/ that spell it out: string constants in Python code (docstrings and
    comments are prose, not lists), quoted strings in templates, pages and scripts."""
    found: dict[str, set[Path]] = {}
    for path in sorted(src.rglob("*")):
        if path.suffix == ".py":
            tree = ast.parse(path.read_text(), str(path))
            skip = _docstrings(tree)
            strings = [n.value for n in ast.walk(tree)
                       if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]
        elif path.suffix in (".html", ".j2", ".js"):
            strings = re.findall(r"""["']([^"'\n]*)["']""", path.read_text())
        else:
            continue
        for s in strings:
            for name in spelled_names(s):
                found.setdefault(name, set()).add(path)
    return found


def test_a_method_is_spelled_out_in_at_most_two_files():
    found = files_spelling()
    assert set(METHODS) <= set(found), "the registry itself must name every method"
    too_many = {n: sorted(str(p.relative_to(SRC)) for p in files) for n, files in found.items() if len(files) > 2}
    assert not too_many, f"method names written out in more than two files under src/: {too_many}"
    outside = {n for n, files in found.items() if REGISTRY_FILE not in files}
    assert not outside, f"names spelled outside the registry only: {outside}"


def test_the_spelling_check_finds_a_hand_written_list(tmp_path):
    """The check above can fail: a copied list and a string comparison are both found."""
    (tmp_path / "a.py").write_text('FAST = ("gradcam", "saliency")\n')
    (tmp_path / "b.py").write_text('def f(m):\n    """Grad-CAM or saliency."""\n    return m != "random"\n')
    (tmp_path / "c.j2").write_text("{% if r.method == 'random' %}x{% endif %}")
    (tmp_path / "d.py").write_text('HELP = "gradcam, ig, occlusion; or all"\n')
    found = files_spelling(tmp_path)
    assert {p.name for p in found["random"]} == {"b.py", "c.j2"}
    assert {p.name for p in found["gradcam"]} == {"a.py", "d.py"}
    assert "saliency" in found and {p.name for p in found["saliency"]} == {"a.py"}  # not the docstring


def test_no_unittest_in_src():
    users = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if re.search(r"^\s*(import|from) unittest\b",
                                                                         p.read_text(), re.M)]
    assert not users


def test_lists_are_derived_from_the_method_objects():
    from tumorlens.serve import batching, settings

    assert settings.FAST_METHODS == FAST_METHODS == tuple(m for m in METHODS if REGISTRY[m].fast)
    assert batching.ONE_PASS_METHODS == ONE_PASS_METHODS
    assert CAM_METHODS == tuple(m for m in METHODS if REGISTRY[m].family == "cam")
    # the perturbation methods are too slow for a web request; the one-pass methods all are CAMs
    assert not {"occlusion", "lime", "kernelshap"} & set(FAST_METHODS)
    assert ONE_PASS_METHODS <= set(CAM_METHODS)
    assert gallery_order(["random", "lime", "gradcam"]) == ["gradcam", "lime", "random"]
    assert all(m in methods_help() for m in METHODS)
    for m in REGISTRY.values():
        assert (m.heatmap_style is None) == (m.family == "cam"), m.name
        assert callable(m.load()), m.name  # every implementation it names exists


def test_method_objects_are_frozen():
    m = method_spec("Grad-CAM")
    assert m.name == "gradcam"
    with pytest.raises(AttributeError):
        m.fast = False
    with pytest.raises(TypeError):
        m.defaults["eigen_smooth"] = True
    with pytest.raises(ExplainError, match="choose one of"):
        method_spec("gradcamm")


def test_cli_help_lists_every_method():
    from typer.testing import CliRunner

    from tumorlens.cli import app

    out = CliRunner().invoke(app, ["explain", "--help"], terminal_width=400).output
    flat = " ".join(out.split())
    for m in METHODS:
        assert m in flat, m


def test_concurrent_calls_on_two_networks_match_sequential_ones():
    """CAM objects are built per call: two threads explaining their own replicas (as the service's
    model threads do) get exactly the maps of one thread doing both."""
    torch.manual_seed(0)
    nets = [build_model("simple_cnn", 3).eval() for _ in range(2)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 48, 48, generator=g)
    methods = ["gradcam", "eigencam", "layercam", "random"]
    expected = {(i, m): explain((net, "simple_cnn"), x, m, seed=1 if m == "random" else None).raw
                if m == "random" else explain((net, "simple_cnn"), x, m).raw
                for i, net in enumerate(nets) for m in methods}
    got, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                for m in methods:
                    kw = {"seed": 1} if m == "random" else {}
                    got[(i, m)] = explain((nets[i], "simple_cnn"), x, m, **kw).raw
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for key, raw in expected.items():
        np.testing.assert_array_equal(got[key], raw, err_msg=str(key))
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for n in nets for m in n.modules()) == 0
