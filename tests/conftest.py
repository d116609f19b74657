"""Shared fixtures.

Session fixtures for the integration layer (a real ComfyUI server, see tests/comfy_server.py):

* ``comfy_base_dir`` -> Path: the server's ``--base-directory`` (models/, input/, output/, user/,
  custom_nodes/ComfyUI-RationalRewards -> this repo) under pytest's tmp dir.
* ``models_dir``     -> ModelsDir: the tiny models, built (or taken from test-artifacts/model-cache)
  into the base directory: ``.checkpoint`` ("tiny_sd15.ckpt"), ``.critic`` ("tiny-qwen3vl", a folder
  in ``models/rationalrewards/``), ``.checkpoint_path``, ``.critic_path``, ``.root``, ``.input_dir`` ...
* ``comfy_server``   -> ComfyClient: a started ``main.py --cpu`` on a free port with the models in
  place; ``.server`` is the process handle, ``.models`` the ModelsDir. Stopped (SIGTERM) at the end.

Tests that use ``comfy_server`` are marked ``integration`` automatically; deselect them with
``-m "not integration"``. When one fails, the tail of the server log is added to its report.
"""
from __future__ import annotations

import os
import signal

import pytest

from tests.comfy_server import (ARTIFACTS_DIR, ComfyClient, ComfyServer, ModelBuild, ModelsDir, comfy_dir,
                                prepare_base_dir, session_log_path)


def _stop_like_ctrl_c(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    """A run stopped with SIGTERM (a CI timeout, ``kill``) ends like Ctrl-C: pytest tears the session
    fixtures down, so no ComfyUI server or fake peer outlives it (the default SIGTERM skips teardown)."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop_like_ctrl_c)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "comfy_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config):
    extra = os.environ.get("RR_TEST_SEED")
    return (f"graph seeds: derived from each test id{f' and RR_TEST_SEED={extra}' if extra else ''} "
            "(a failed test prints the seeds it used; rerun it alone to replay them)")


@pytest.fixture(autouse=True)
def _seeds_from_the_test_id(request):
    """Integration/browser tests draw graph seeds from ``comfy_server.fresh_seed()``: start them from a hash
    of the test id, so a red test rerun alone queues the very same graphs."""
    if "comfy_server" in request.fixturenames:
        request.getfixturevalue("comfy_server").begin_test(request.node.nodeid)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "comfy_server" in getattr(item, "fixturenames", ()):
        client = item.funcargs.get("comfy_server") if hasattr(item, "funcargs") else None
        if isinstance(client, ComfyClient):
            extra = os.environ.get("RR_TEST_SEED")
            rep.sections.append(("seeds", f"fresh_seed() gave {client.seeds_used} (derived from {item.nodeid!r}"
                                          f"{f' and RR_TEST_SEED={extra}' if extra else ''}); rerun this test "
                                          "alone to replay them"))
        if isinstance(client, ComfyClient) and client.server is not None:
            rep.sections.append(("ComfyUI server log (tail, full log: %s)" % client.server.log_path,
                                 client.server.log_tail(60)))


@pytest.fixture(scope="session")
def comfy_base_dir(tmp_path_factory):
    if not (comfy_dir() / "main.py").is_file():
        pytest.fail(f"no ComfyUI tree at {comfy_dir()}: run scripts/setup_env.sh (or set RR_COMFYUI_DIR)",
                    pytrace=False)
    return prepare_base_dir(tmp_path_factory.mktemp("comfy-base"))


@pytest.fixture(scope="session")
def _model_build(comfy_base_dir):
    """Starts building the tiny models in subprocesses; ``models_dir`` waits for them."""
    build = ModelBuild(comfy_base_dir / "models", log_dir=ARTIFACTS_DIR).start()
    yield build
    build.abort()


@pytest.fixture(scope="session")
def models_dir(_model_build, comfy_base_dir) -> ModelsDir:
    _model_build.wait()
    return _model_build.models_dir(comfy_base_dir)


@pytest.fixture(scope="session")
def comfy_server(comfy_base_dir, _model_build, request):
    """A running ComfyUI with this pack and the tiny models; yields a ComfyClient. ``RR_FRONTEND_ROOT``
    serves another frontend (the ``static`` folder of a ``comfyui-frontend-package`` wheel)."""
    frontend = os.environ.get("RR_FRONTEND_ROOT")
    server = ComfyServer(comfy_base_dir, session_log_path(ARTIFACTS_DIR),
                         extra_args=("--front-end-root", frontend) if frontend else ())
    try:
        server.start(timeout=120)  # the model build runs meanwhile
        models = request.getfixturevalue("models_dir")
        yield ComfyClient(server.url, server=server, models=models)
    finally:
        server.stop()
