"""Old module paths (before the core was grouped by concern), kept importable for one release.

``rationalrewards.loader``, ``rationalrewards.reward`` and ``rationalrewards.flow_factory`` are public
entry points and stay without a warning; every other old path still imports (as the very same module
object, so patching or ``isinstance`` checks behave as before) and warns once that it moved.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

# old module (relative to the package) -> where it lives now
MOVED: dict[str, str] = {
    **{m: f"judging.{m}" for m in ("rubric", "critique", "rules", "parser", "refine", "loop",
                                    "cards", "saved")},
    **{m: f"critic.{m}" for m in ("prompting", "images", "script", "progress", "tournament")},
    **{m: f"runtime.{m}" for m in ("loader", "quantization", "memory_plan", "residency", "compat")},
    **{m: f"toolkit.{m}" for m in ("cli", "dispatch", "manifest", "tables", "evaluate", "benchmarks", "parrot",
                                    "preferences", "distill", "reward", "flow_factory", "pipeline_loop")},
}
PUBLIC = frozenset({"loader", "reward", "flow_factory"})


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``<package>.<old>`` with the module at its new place (one object under two names)."""

    def __init__(self, package: str):
        self.package = package
        self._spec: dict[str, tuple] = {}

    def find_spec(self, fullname, path=None, target=None):
        head, _, old = fullname.rpartition(".")
        if head != self.package or old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        old = spec.name.rpartition(".")[2]
        if old not in PUBLIC:
            warnings.warn(f"{spec.name} moved to {self.package}.{MOVED[old]}; the old path goes in the next release",
                          DeprecationWarning, stacklevel=2)
        module = importlib.import_module(f"{self.package}.{MOVED[old]}")
        self._spec[spec.name] = (module.__spec__, module.__loader__)
        return module

    def exec_module(self, module):
        # the import system stamped the alias spec on the real module: give it back its own
        for name, (spec, loader) in list(self._spec.items()):
            if sys.modules.get(name) is module:
                module.__spec__, module.__loader__ = spec, loader
                del self._spec[name]


def install(package: str) -> None:
    """Make the old paths of ``package`` (the core's import name) importable; idempotent."""
    if not any(isinstance(f, _Alias) and f.package == package for f in sys.meta_path):
        sys.meta_path.append(_Alias(package))
