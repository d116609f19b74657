"""The card's scripts parse: a syntax error makes ComfyUI skip the whole extension, silently for the artist."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"


@pytest.mark.parametrize("script", sorted(p.name for p in WEB.glob("*.js")))
def test_card_script_parses(script, tmp_path):
    node = shutil.which("node")
    if node is None:
        if os.environ.get("RR_REQUIRE_BROWSER"):
            pytest.fail("node is not installed; CI needs it to check the card's scripts")
        pytest.skip("node is not installed")
    module = tmp_path / (Path(script).stem + ".mjs")     # the frontend loads them as ES modules
    module.write_text((WEB / script).read_text(encoding="utf-8"), encoding="utf-8")
    done = subprocess.run([node, "--check", str(module)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"web/{script} does not parse:\n{done.stderr}"
