"""Test harness: a real ComfyUI server (``--cpu``) with this pack loaded, and a small HTTP client.

Used by the fixtures in ``tests/conftest.py``; nothing here imports torch or ComfyUI, which run
in subprocesses only:

* ``prepare_base_dir``  lays out a ComfyUI ``--base-directory`` (models/, user/, input/, output/,
  custom_nodes/ with a link to this repository) with the frontend's first-run dialogs switched off;
* ``ModelBuild``        builds the tiny SD1.5 checkpoint and tiny critic(s) in subprocesses, cached
  under ``test-artifacts/model-cache/`` by a hash of the builders' sources and library versions;
* ``ComfyServer``       starts/stops ``main.py`` on a free loopback port, logging to test-artifacts/;
* ``ComfyClient``       ``object_info``, ``queue``, ``wait``, ``run``, ``upload_image``, ``interrupt``,
  ``free``, ``log_tail`` ...; ``outputs(entry)`` / ``execution_error(entry)`` read history entries;
* ``Graph``             builds API-format prompts; ``txt2img_graph`` is the tiny SD1.5 pipeline.

Environment: ``RR_COMFYUI_DIR`` (ComfyUI tree, default ``.comfyui/ComfyUI`` under the repo),
``RR_TEST_MODEL_CACHE=0`` (rebuild the tiny models every session), ``RR_REQUIRE_COMFYUI=1`` (tests that
need the tree fail instead of skipping when it is missing; .ci/run sets it).
"""
from __future__ import annotations

import atexit
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-RationalRewards"
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"

CHECKPOINT_NAME = "tiny_sd15.ckpt"     # as CheckpointLoaderSimple lists it
CRITIC_FOLDER = "rationalrewards"      # models/<CRITIC_FOLDER>/<critic name>/
CRITIC_NAME = "tiny-qwen3vl"
WIDE_CRITIC_NAME = "tiny-qwen3vl-wide"
CRITICS = {CRITIC_NAME: "qwen3vl",      # critic folder name -> tests/fixtures/tiny_critic.py family
           WIDE_CRITIC_NAME: "qwen3vl-wide"}   # bitsandbytes-friendly widths: the quantised-critic tests
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"
PROBE_NAME = "rr_test_probe"           # test-only custom node: what the server process holds (soak test)


def comfy_dir() -> Path:
    """The ComfyUI tree the tests run: ``$RR_COMFYUI_DIR`` or ``.comfyui/ComfyUI`` in the repo."""
    return Path(os.environ.get("RR_COMFYUI_DIR") or REPO_ROOT / ".comfyui" / "ComfyUI").resolve()


def seed_for_test(test_id: str) -> int:
    """The first seed of a test: a hash of its id (and ``$RR_TEST_SEED``, to explore other seeds),
    spaced so consecutive ``fresh_seed()`` calls of different tests never meet."""
    digest = hashlib.sha256(f"{os.environ.get('RR_TEST_SEED', '')}|{test_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1_000_000 * 1000


def comfyui_required() -> bool:
    """``RR_REQUIRE_COMFYUI=1`` (set by .ci/run): a missing ComfyUI tree fails the tests that need it."""
    return os.environ.get("RR_REQUIRE_COMFYUI", "").lower() in ("1", "true", "yes")


def missing_comfyui(reason: str) -> None:
    """Skip a test that needs the ComfyUI tree, or fail it when ``RR_REQUIRE_COMFYUI`` is set (in CI a
    missing tree is a broken setup, not a reason to skip; the browser tests do the same with
    ``RR_REQUIRE_BROWSER``)."""
    import pytest
    if comfyui_required():
        pytest.fail(f"{reason} (RR_REQUIRE_COMFYUI is set: .ci/run builds the tree with scripts/setup_env.sh)",
                    pytrace=False)
    pytest.skip(reason)


def _tail(path: Path, lines: int = 80) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Base directory and models
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelsDir:
    """Where the tiny models live inside the server's base directory, and the names tests use."""
    base: Path                # ComfyUI --base-directory
    root: Path                # base/models
    checkpoint: str           # "tiny_sd15.ckpt": the ckpt_name for CheckpointLoaderSimple
    checkpoint_path: Path
    critic: str               # "tiny-qwen3vl": folder name under models/rationalrewards/
    critic_path: Path
    critic_folder: str = CRITIC_FOLDER
    critics: dict[str, Path] = field(default_factory=dict)   # every built critic: name -> path
    input_dir: Path | None = None
    output_dir: Path | None = None


def prepare_base_dir(base: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Create a ComfyUI base directory with the pack (and the test-only probe) linked into its custom_nodes/."""
    base = Path(base)
    for sub in ("models/checkpoints", f"models/{CRITIC_FOLDER}", "input", "output", "temp",
                "user/default", "custom_nodes"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    settings = base / "user" / "default" / "comfy.settings.json"
    if not settings.exists():  # the frontend opens a templates dialog for a new user otherwise
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}, indent=2))
    link = base / "custom_nodes" / PACK_NAME
    if not link.is_symlink():
        link.symlink_to(repo_root, target_is_directory=True)
    probe = base / "custom_nodes" / PROBE_NAME     # test-only: GET /rr_test/probe (tests/fixtures/soak_probe)
    if not probe.is_symlink():
        probe.symlink_to(FIXTURES_DIR / "soak_probe", target_is_directory=True)
    return base


def dist_version(name: str) -> str:
    """An installed distribution's version, "-" when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def comfyui_version(comfy: Path | None = None) -> str:
    """The version of the ComfyUI tree the tests run ("-" when its version file is missing)."""
    version_file = (comfy or comfy_dir()) / "comfyui_version.py"
    return version_file.read_text().split('"')[1] if version_file.is_file() else "-"


def _model_cache_key(comfy: Path) -> str:
    h = hashlib.sha256()
    for f in (FIXTURES_DIR / "tiny_sd15.py", FIXTURES_DIR / "tiny_critic.py"):
        h.update(f.read_bytes())
    version_file = comfy / "comfyui_version.py"
    h.update(version_file.read_bytes() if version_file.exists() else b"?")
    h.update(json.dumps(CRITICS, sort_keys=True).encode())
    h.update(repr((sys.version_info[:2], *(dist_version(d) for d in
                   ("torch", "transformers", "tokenizers", "safetensors")))).encode())
    return h.hexdigest()[:16]


class ModelBuild:
    """Builds (or takes from the cache) the tiny models and copies them into ``models_root``.

    ``start()`` returns at once (builders run as subprocesses, in parallel with whatever the
    caller does next, e.g. starting the server); ``wait()`` blocks until the files are in place.
    """

    def __init__(self, models_root: Path, comfy: Path | None = None, python: str = sys.executable,
                 log_dir: Path = ARTIFACTS_DIR, use_cache: bool | None = None):
        self.models_root = Path(models_root)
        self.comfy = Path(comfy or comfy_dir())
        self.python = python
        self.log_dir = Path(log_dir)
        if use_cache is None:
            use_cache = os.environ.get("RR_TEST_MODEL_CACHE", "1") not in ("0", "false", "no")
        self.use_cache = use_cache
        self.cache_dir = self.log_dir / "model-cache" / _model_cache_key(self.comfy)
        self._procs: list[tuple[str, subprocess.Popen, Path]] = []
        self._staging: Path | None = None
        self.seconds: float | None = None
        self.from_cache = False
        self._t0 = 0.0

    def start(self) -> "ModelBuild":
        self._t0 = time.monotonic()
        if self.use_cache and self.cache_dir.is_dir():
            self.from_cache = True
            return self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix="model-build-", dir=self.log_dir))
        env = _child_env()
        jobs = [("tiny_sd15", [self.python, str(FIXTURES_DIR / "tiny_sd15.py"), str(self.comfy),
                               str(self._staging)])]
        for name, family in CRITICS.items():
            jobs.append((f"critic-{name}", [self.python, "-m", "tests.fixtures.tiny_critic",
                                            str(self._staging / CRITIC_FOLDER / name), family]))
        for name, cmd in jobs:
            log = self.log_dir / f"build-{name}-{os.getpid()}.log"  # concurrent sessions share the folder
            with open(log, "wb") as fh:
                proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
            self._procs.append((name, proc, log))
        return self

    def wait(self, timeout: float = 300) -> "ModelBuild":
        if self.seconds is not None:  # already done
            return self
        deadline = time.monotonic() + timeout
        failures = []
        logs = [log for _, _, log in self._procs]
        for name, proc, log in self._procs:
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "timeout"
            if rc != 0:
                failures.append(f"--- building {name} failed ({rc}); {log}:\n{_tail(log, 40)}")
        self._procs = []
        if failures:
            raise RuntimeError("tiny model build failed\n" + "\n".join(failures))
        for log in logs:
            log.unlink(missing_ok=True)
        src = self.cache_dir if self.from_cache else self._staging
        if self._staging is not None:
            if self.use_cache:
                self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(self._staging, self.cache_dir)
                    src = self.cache_dir
                except OSError:  # another session filled the cache first; ours is as good
                    pass
                stale = sorted((d for d in self.cache_dir.parent.iterdir() if d != self.cache_dir),
                               key=lambda d: d.stat().st_mtime)[:-2]  # keep the two newest other keys
                for d in stale:
                    shutil.rmtree(d, ignore_errors=True)
        self._install(Path(src))
        if self._staging is not None and self._staging.exists():
            shutil.rmtree(self._staging, ignore_errors=True)
        self.seconds = time.monotonic() - self._t0
        return self

    def _install(self, src: Path) -> None:
        # Copies (not links): a test may rewrite a model file in place without touching the cache.
        # Each item is copied under a hidden name and renamed, so ComfyUI never lists half a file.
        items = [Path("checkpoints") / CHECKPOINT_NAME] + [Path(CRITIC_FOLDER) / n for n in CRITICS]
        for rel in items:
            dst = self.models_root / rel
            if dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.parent / f".{dst.name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            if (src / rel).is_dir():
                shutil.copytree(src / rel, tmp)
            else:
                shutil.copy2(src / rel, tmp)
            os.rename(tmp, dst)

    def models_dir(self, base: Path) -> ModelsDir:
        critics = {n: self.models_root / CRITIC_FOLDER / n for n in CRITICS}
        return ModelsDir(base=Path(base), root=self.models_root, checkpoint=CHECKPOINT_NAME,
                         checkpoint_path=self.models_root / "checkpoints" / CHECKPOINT_NAME,
                         critic=CRITIC_NAME, critic_path=critics[CRITIC_NAME], critics=critics,
                         input_dir=Path(base) / "input", output_dir=Path(base) / "output")

    def abort(self) -> None:
        for _, proc, _ in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._procs = []
        if self._staging is not None and self._staging.exists():
            shutil.rmtree(self._staging, ignore_errors=True)


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")          # tests never reach the Hub
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------

class ServerStartError(RuntimeError):
    pass


def session_log_path(log_dir: Path = ARTIFACTS_DIR, keep: int = 10) -> Path:
    """A fresh ``comfyui-server-<time>-<pid>[-<xdist worker>].log`` in ``log_dir``; ``comfyui-server.log``
    links to the newest. Sessions running side by side in one checkout never share a log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    path = log_dir / f"comfyui-server-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{'-' + worker if worker else ''}.log"
    for old in sorted(log_dir.glob("comfyui-server-*.log"), key=lambda p: p.stat().st_mtime)[:-keep or None]:
        old.unlink(missing_ok=True)
    latest = log_dir / "comfyui-server.log"
    try:
        tmp = log_dir / f".comfyui-server.log.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path.name)
        os.replace(tmp, latest)
    except OSError:
        pass
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """One ComfyUI ``main.py --cpu`` process on a free loopback port."""

    def __init__(self, base_dir: Path, log_path: Path, comfy: Path | None = None,
                 python: str = sys.executable, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        self.base_dir = Path(base_dir)
        self.log_path = Path(log_path)
        self.comfy = Path(comfy or comfy_dir())
        self.python = python
        self.extra_args = tuple(extra_args)
        self.env = env or {}
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, port: int) -> list[str]:
        db = self.base_dir / "user" / "comfyui.db"  # default is inside the ComfyUI tree; keep it per session
        return [self.python, str(self.comfy / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                "--base-directory", str(self.base_dir), "--database-url", f"sqlite:///{db}",
                *self.extra_args]

    def start(self, timeout: float = 120, attempts: int = 3) -> "ComfyServer":
        if not (self.comfy / "main.py").is_file():
            raise ServerStartError(f"no ComfyUI at {self.comfy} (run scripts/setup_env.sh, or set RR_COMFYUI_DIR)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            self.port = free_port()
            cmd = self.command(self.port)
            with open(self.log_path, "w" if attempt == 0 else "a") as fh:
                fh.write(f"# harness: {' '.join(cmd)}\n# base directory: {self.base_dir}\n")
            t0 = time.monotonic()
            with open(self.log_path, "ab") as fh:
                self.proc = subprocess.Popen(cmd, cwd=self.base_dir, env=_child_env(self.env), stdout=fh,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
            _LIVE.add(self)
            try:
                self._wait_ready(t0 + timeout)
            except ServerStartError:
                busy = "address already in use" in _tail(self.log_path, 30).lower()
                self.stop()
                if busy and attempt + 1 < attempts:
                    continue
                raise
            self.startup_seconds = time.monotonic() - t0
            with open(self.log_path, "a") as fh:
                fh.write(f"# harness: /object_info answered after {self.startup_seconds:.1f}s\n")
            return self
        raise AssertionError("unreachable")

    def _wait_ready(self, deadline: float) -> None:
        import requests
        session = requests.Session()
        session.trust_env = False  # never send loopback traffic through a proxy
        while True:
            if self.proc.poll() is not None:
                raise ServerStartError(f"ComfyUI exited with code {self.proc.returncode} during start-up; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            try:
                r = session.get(self.url + "/object_info", timeout=30)
                if r.status_code == 200 and isinstance(r.json(), dict):
                    return
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(f"ComfyUI did not answer /object_info on {self.url} in time; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and nothing else
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def log_tail(self, lines: int = 80) -> str:
        return _tail(self.log_path, lines)

    def custom_node_import_error(self, name: str = PACK_NAME) -> str | None:
        """The traceback ComfyUI logged when importing custom node folder ``name`` failed, else None
        (a failing custom node is logged at start-up, not fatal: the server runs without it)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Cannot import ") and f"{os.sep}{name} module for custom nodes" in line:
                start = i
                while start > 0 and not lines[start].startswith("Traceback"):
                    start -= 1
                return "\n".join(lines[start if lines[start].startswith("Traceback") else i:i + 1])
        return None


_LIVE: set[ComfyServer] = set()


@atexit.register
def _stop_leftover_servers() -> None:  # if pytest dies before fixture teardown
    for server in list(_LIVE):
        server.stop(timeout=5)


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------

class PromptRejected(RuntimeError):
    """POST /prompt answered 400: validation failed before anything ran."""

    def __init__(self, status: int, body: Any):
        self.status, self.body = status, body
        err = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"prompt rejected ({status}): {err.get('message', body)} "
                         f"{json.dumps(body.get('node_errors', {}) if isinstance(body, dict) else {})[:2000]}")

    @property
    def node_errors(self) -> dict:
        return self.body.get("node_errors", {}) if isinstance(self.body, dict) else {}


class ExecutionFailed(RuntimeError):
    def __init__(self, entry: dict, error: dict | None):
        self.entry, self.error = entry, error or {}
        super().__init__(f"execution failed in node {self.error.get('node_id')} ({self.error.get('node_type')}): "
                         f"{self.error.get('exception_type')}: {self.error.get('exception_message')}")


def outputs(entry: dict) -> dict[str, dict]:
    """``{node_id: ui_output}`` of a history entry (e.g. ``{"9": {"images": [...]}}``)."""
    return entry.get("outputs", {}) or {}


def messages(entry: dict) -> list[tuple[str, dict]]:
    return [tuple(m) for m in (entry.get("status") or {}).get("messages", [])]


def execution_error(entry: dict) -> dict | None:
    """The ``execution_error`` message of a failed run (``node_id``, ``node_type``, ``exception_type``,
    ``exception_message``, ``traceback`` ...), or None when the run did not fail with an exception."""
    for kind, data in messages(entry):
        if kind == "execution_error":
            return data
    return None


def cached_nodes(entry: dict) -> list[str]:
    """Node ids served from the cache (not executed) in this run. Note: in ComfyUI 0.3.75 a cached
    output node still reports its earlier ui output in ``outputs``; this list tells the two apart."""
    return [n for kind, data in messages(entry) if kind == "execution_cached" for n in data.get("nodes", [])]


def interrupted(entry: dict) -> bool:
    return any(kind == "execution_interrupted" for kind, _ in messages(entry))


def images(entry: dict, node_id: str | None = None) -> list[dict]:
    """Image refs (``filename``, ``subfolder``, ``type``) in a history entry's outputs."""
    out = outputs(entry)
    nodes = [node_id] if node_id is not None else list(out)
    return [img for n in nodes for img in (out.get(n, {}) or {}).get("images", [])]


class ComfyClient:
    """Talks to a ComfyUI server over HTTP. ``server`` (optional) gives ``log_tail`` and liveness."""

    outputs = staticmethod(outputs)
    execution_error = staticmethod(execution_error)
    interrupted = staticmethod(interrupted)
    cached_nodes = staticmethod(cached_nodes)
    images = staticmethod(images)
    messages = staticmethod(messages)

    def __init__(self, url: str, server: ComfyServer | None = None, client_id: str | None = None,
                 models: ModelsDir | None = None):
        import requests
        self.url = url.rstrip("/")
        self.server = server
        self.models = models
        self.client_id = client_id or uuid.uuid4().hex
        self.http = requests.Session()
        self.http.trust_env = False
        self.seeds_used: list[int] = []
        self.begin_test("session")

    # -- plumbing ---------------------------------------------------------------------------
    def get(self, path: str, **kw):
        kw.setdefault("timeout", 60)
        return self.http.get(self.url + path, **kw)

    def post(self, path: str, **kw):
        kw.setdefault("timeout", 60)
        return self.http.post(self.url + path, **kw)

    def log_tail(self, lines: int = 80) -> str:
        return self.server.log_tail(lines) if self.server else "<server not started by this harness>"

    def pack_import_error(self) -> str | None:
        """Why ComfyUI could not import this pack (traceback from the log), or None if it loaded."""
        return self.server.custom_node_import_error(PACK_NAME) if self.server else None

    def begin_test(self, test_id: str) -> None:
        """Seeds from now on derive from ``test_id`` (and ``$RR_TEST_SEED``), so rerunning one test replays
        the exact graphs of the failed run; the conftest calls this before every test."""
        self._seeds = itertools.count(seed_for_test(test_id))
        self.seeds_used = []

    def fresh_seed(self) -> int:
        """A seed no earlier prompt of this session used (different tests start far apart): varies the graph
        so the cache never hides a run. Deterministic per test id; the seeds a failed test used are printed."""
        seed = next(self._seeds)
        self.seeds_used.append(seed)
        return seed

    # -- API --------------------------------------------------------------------------------
    def object_info(self, node_class: str | None = None) -> dict:
        r = self.get("/object_info" + (f"/{node_class}" if node_class else ""))
        r.raise_for_status()
        return r.json()

    def queue(self, prompt: "dict | Graph", extra_data: dict | None = None, prompt_id: str | None = None) -> str:
        """POST /prompt; returns the prompt id. Raises ``PromptRejected`` on validation errors."""
        if isinstance(prompt, Graph):
            prompt = prompt.prompt()
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        if prompt_id:
            body["prompt_id"] = prompt_id
        r = self.post("/prompt", json=body)
        try:
            data = r.json()
        except ValueError:
            data = {"error": {"message": r.text}}
        if r.status_code != 200:
            raise PromptRejected(r.status_code, data)
        return data["prompt_id"]

    def history(self, prompt_id: str | None = None) -> dict:
        r = self.get("/history" + (f"/{prompt_id}" if prompt_id else ""))
        r.raise_for_status()
        return r.json()

    def queue_state(self) -> dict:
        r = self.get("/queue")
        r.raise_for_status()
        return r.json()

    def wait(self, prompt_id: str, timeout: float = 120, poll: float = 0.05) -> dict:
        """Poll /history/<id> until the prompt finished (success, error or interrupted); return the entry.

        The entry has ``outputs``, ``status`` (``status_str``, ``completed``, ``messages``) and ``prompt``.
        """
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id).get(prompt_id)
            if entry and entry.get("status") is not None:
                return entry
            if self.server is not None and not self.server.alive():
                raise RuntimeError(f"ComfyUI died while running {prompt_id}; log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout}s; queue={self.queue_state()}\n"
                                   f"log:\n{self.log_tail()}")
            time.sleep(poll)
            poll = min(poll * 1.5, 0.5)

    def run(self, prompt: "dict | Graph", timeout: float = 120, check: bool = True, **kw) -> dict:
        """queue + wait. With ``check`` a failed run raises ``ExecutionFailed`` (with the server log)."""
        entry = self.wait(self.queue(prompt, **kw), timeout=timeout)
        if check and entry["status"].get("status_str") != "success":
            err = ExecutionFailed(entry, execution_error(entry))
            err.args = (f"{err.args[0]}\n{(err.error.get('traceback') or [''])[-1:]}\nlog:\n{self.log_tail(40)}",)
            raise err
        return entry

    def events(self, timeout: float = 240) -> "Events":
        """The server's websocket messages to this client (open it before queueing what it should see)."""
        return Events(self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}", timeout)

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.post("/interrupt", json={"prompt_id": prompt_id} if prompt_id else {}).raise_for_status()

    def clear_queue(self) -> None:
        self.post("/queue", json={"clear": True}).raise_for_status()

    def free(self, unload_models: bool = True, free_memory: bool = True, settle: float = 0.3) -> None:
        """POST /free. The worker acts on it when idle, asynchronously; wait for an empty queue and
        ``settle`` seconds so a prompt queued next does not overtake it."""
        self.post("/free", json={"unload_models": unload_models, "free_memory": free_memory}).raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            q = self.queue_state()
            if not q["queue_running"] and not q["queue_pending"]:
                break
            time.sleep(0.05)
        time.sleep(settle)

    def upload_image(self, image, name: str | None = None, subfolder: str = "", overwrite: bool = True) -> str:
        """POST /upload/image (type input). ``image``: a path or a PIL image. Returns the name a
        LoadImage node takes (``subfolder/name`` when a subfolder is given)."""
        if isinstance(image, (str, os.PathLike)):
            path = Path(image)
            data, filename = path.read_bytes(), name or path.name
        else:
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            data, filename = buf.getvalue(), name or f"upload-{uuid.uuid4().hex[:12]}.png"
        r = self.post("/upload/image", files={"image": (filename, data, "image/png")},
                      data={"type": "input", "subfolder": subfolder, "overwrite": "true" if overwrite else "false"})
        r.raise_for_status()
        info = r.json()
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def fetch_image(self, ref: dict):
        """GET /view for an image ref from ``images(entry)``; returns a PIL image."""
        from PIL import Image
        r = self.get("/view", params={"filename": ref["filename"], "subfolder": ref.get("subfolder", ""),
                                      "type": ref.get("type", "output")})
        r.raise_for_status()
        img = Image.open(io.BytesIO(r.content))
        img.load()
        return img


class Events:
    """A websocket listener: ``with client.events() as ev: ...; ev.wait(lambda m: ...)``.

    Tests wait on what the server reports (``progress``, ``executed``, ``execution_interrupted`` ...)
    instead of sleeping a fixed time; every message received is kept in ``seen`` (JSON ones, as dicts)."""

    def __init__(self, url: str, timeout: float = 240):
        import websocket
        self.ws = websocket.create_connection(url, timeout=timeout)
        self.seen: list[dict] = []

    def __enter__(self) -> "Events":
        return self

    def __exit__(self, *exc) -> None:
        self.ws.close()

    def wait(self, predicate, timeout: float = 240, what: str = "the message") -> dict:
        """The first message from now on for which ``predicate(message)`` is true."""
        import websocket
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} did not arrive within {timeout:g} s; last messages: "
                                   f"{[m.get('type') for m in self.seen[-10:]]}")
            self.ws.settimeout(left)
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if not isinstance(raw, str):
                continue                    # binary preview frames
            msg = json.loads(raw)
            self.seen.append(msg)
            if predicate(msg):
                return msg

    def progress(self, node: str | None = None) -> list[dict]:
        """The ``progress`` data seen so far (optionally of one node id)."""
        return [m["data"] for m in self.seen if m.get("type") == "progress"
                and (node is None or m["data"].get("node") == node)]


# ---------------------------------------------------------------------------------------------
# API-format graphs
# ---------------------------------------------------------------------------------------------

class Node:
    def __init__(self, graph: "Graph", node_id: str, class_type: str, inputs: dict):
        self.graph, self.id, self.class_type, self.inputs = graph, node_id, class_type, inputs

    def out(self, index: int = 0) -> list:
        return [self.id, index]

    __getitem__ = out

    def set(self, **inputs) -> "Node":
        self.inputs.update(inputs)
        return self


class Graph:
    """Builds an API-format prompt: ``g.node("KSampler", model=ckpt.out(0), seed=1, ...)``.
    A ``Node`` passed as an input value means its output 0."""

    def __init__(self):
        self.nodes: dict[str, Node] = {}
        self._ids = itertools.count(1)

    def node(self, class_type: str, node_id: str | None = None, **inputs) -> Node:
        node_id = str(node_id if node_id is not None else next(self._ids))
        while node_id in self.nodes:
            node_id = str(next(self._ids))
        node = Node(self, node_id, class_type, inputs)
        self.nodes[node_id] = node
        return node

    def prompt(self) -> dict:
        def value(v):
            return v.out(0) if isinstance(v, Node) else v
        return {nid: {"class_type": n.class_type, "inputs": {k: value(v) for k, v in n.inputs.items()}}
                for nid, n in self.nodes.items()}


def txt2img_graph(checkpoint: str, seed: int, positive: str = "a red cat", negative: str = "",
                  steps: int = 2, width: int = 64, height: int = 64, batch_size: int = 1,
                  output: str | None = "PreviewImage") -> tuple[Graph, dict[str, Node]]:
    """CheckpointLoaderSimple -> CLIPTextEncode x2 -> EmptyLatentImage -> KSampler -> VAEDecode [-> output].
    Returns the graph and its nodes by role: ckpt, positive, negative, latent, sampler, decode[, output]."""
    g = Graph()
    n: dict[str, Node] = {}
    n["ckpt"] = g.node("CheckpointLoaderSimple", ckpt_name=checkpoint)
    n["positive"] = g.node("CLIPTextEncode", text=positive, clip=n["ckpt"].out(1))
    n["negative"] = g.node("CLIPTextEncode", text=negative, clip=n["ckpt"].out(1))
    n["latent"] = g.node("EmptyLatentImage", width=width, height=height, batch_size=batch_size)
    n["sampler"] = g.node("KSampler", model=n["ckpt"].out(0), positive=n["positive"], negative=n["negative"],
                          latent_image=n["latent"], seed=seed, steps=steps, cfg=1.0, sampler_name="euler",
                          scheduler="normal", denoise=1.0)
    n["decode"] = g.node("VAEDecode", samples=n["sampler"], vae=n["ckpt"].out(2))
    if output:
        n["output"] = g.node(output, images=n["decode"])
    return g, n
