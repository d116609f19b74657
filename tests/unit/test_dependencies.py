"""Install surface: requirements.txt (what ComfyUI-Manager installs) in step with pyproject.toml, the
transformers range checked with one clear message, and transformers imported only where it is needed."""
from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rationalrewards.runtime import compat

ROOT = Path(__file__).resolve().parents[2]


def requirement_lines() -> list[str]:
    return [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_requirements_txt_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert requirement_lines() == deps
    assert not any(r.split(">")[0].split("=")[0].strip() == "torch" for r in deps), "ComfyUI brings torch"


def test_transformers_lower_bound_is_the_checked_one():
    [line] = [r for r in requirement_lines() if r.startswith("transformers")]
    assert line == f"transformers>={compat.TRANSFORMERS_MIN},<{compat.TRANSFORMERS_MAX}"


@pytest.mark.parametrize("version, ok", [("4.50.3", False), ("4.56.2", False), ("4.57.0", False), ("4.57.1", True), ("4.57.6", True),
                                         ("5.0.0", True), ("5.24.0", True), ("5.24.0.dev0", True), ("6.0.0", False)])
def test_transformers_range(version, ok):
    problem = compat.transformers_problem(version)
    assert (problem is None) == ok
    if not ok:
        assert f"transformers {version} is installed" in problem
        assert f'pip install "transformers>={compat.TRANSFORMERS_MIN},<{compat.TRANSFORMERS_MAX}"' in problem
        assert "Connect to Critic Server" in problem


def test_unsupported_transformers_raises_one_dependency_error(monkeypatch):
    monkeypatch.setattr(compat.metadata, "version", lambda name: "4.50.3")
    with pytest.raises(compat.DependencyError, match="transformers 4.50.3 is installed"):
        compat.require_transformers()


def test_core_without_a_local_model_never_imports_transformers():
    code = ("import sys; import rationalrewards, rationalrewards.critic.critic, rationalrewards.runtime.loader, "
            "rationalrewards.runtime.memory_plan, rationalrewards.backends.openai_server, rationalrewards.backends.options, "
            "rationalrewards.grounding.loader; print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_nodes_import_transformers_lazily():
    """No node module imports transformers (or the backend that does) at import time, so an unsupported
    version fails Load Critic with the message above instead of every node of the pack."""
    for path in sorted((ROOT / "nodes").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:   # module level only; imports inside functions are lazy
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                assert not (mod.startswith("transformers") or mod.endswith("transformers_backend")), path.name
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("transformers") for a in node.names), path.name
