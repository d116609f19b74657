"""Which transformers the core runs on, checked once with a message a user can act on.

The pack supports the widest range it is tested with: from the first release with Qwen3-VL (4.57)
through 5.x. Other packs in the same ComfyUI often pin 4.5x; an older transformers must not fail
every node with a traceback, so the version is checked here, before anything imports it, and only
by what needs a local model (Load Critic, the grounding loaders). The server critic needs none.
"""
from __future__ import annotations

import re
from importlib import metadata
from ..errors import RationalRewardsError

TRANSFORMERS_MIN = "4.57.1"   # 4.57.0 was yanked from PyPI. Keep in step with requirements.txt and pyproject.toml (a unit test checks)
TRANSFORMERS_MAX = "6"        # exclusive


class DependencyError(RationalRewardsError, ImportError):
    """A dependency is missing or outside the supported range; the message gives the pip command."""


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])


def transformers_problem(installed: str | None = None) -> str | None:
    """None when the installed transformers is supported, else what is wrong and the fix."""
    if installed is None:
        try:
            installed = metadata.version("transformers")
        except metadata.PackageNotFoundError:
            return (f"transformers is not installed; the local critic needs transformers>={TRANSFORMERS_MIN}: "
                    f"pip install \"transformers>={TRANSFORMERS_MIN},<{TRANSFORMERS_MAX}\"")
    v = _version_tuple(installed)
    if v < _version_tuple(TRANSFORMERS_MIN) or v >= _version_tuple(TRANSFORMERS_MAX):
        return (f"transformers {installed} is installed; the local critic needs transformers>={TRANSFORMERS_MIN},"
                f"<{TRANSFORMERS_MAX} (Qwen3-VL first appears in 4.57): pip install "
                f"\"transformers>={TRANSFORMERS_MIN},<{TRANSFORMERS_MAX}\" in ComfyUI's Python environment "
                "(the 'Connect to Critic Server' node works without it)")
    return None


def require_transformers() -> None:
    """Raise DependencyError (one clear message) when the installed transformers is unsupported."""
    problem = transformers_problem()
    if problem:
        raise DependencyError(problem)
