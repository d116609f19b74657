"""The core's architecture holds: no import circles, no probing of backends, one contract every backend
meets, and one way through the critic (a scripted answer, a template and the record apply alike on every
path that asks it: critique, compare, dispatcher, tournament, PARROT, the grounding follow-up)."""
from __future__ import annotations

import ast
import json
import re
import threading
from pathlib import Path

import pytest
from PIL import Image

from rationalrewards.backends.base import Backend, GenerationOptions
from rationalrewards.backends.openai_server import OpenAIServerBackend
from rationalrewards.critic.critic import Critic, Item
from rationalrewards.critic.script import AnswerScript
from rationalrewards.critic.tournament import pairwise_rank
from rationalrewards.grounding.followup import ask_regions
from rationalrewards.judging.parser import parse_critique
from rationalrewards.judging.rubric import Task
from rationalrewards.toolkit.dispatch import Dispatcher
from tests.fixtures.fake_openai import FakeOpenAI
from tests.unit.rr_sample_answers import T2I_FULL

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "models"
GREEDY = GenerationOptions(max_new_tokens=600, temperature=0)


# --- the tree ---------------------------------------------------------------------------------------

def _module(path: Path, root: Path = CORE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = CORE) -> dict[str, set[str]]:
    """Module -> the core modules it imports, anywhere in the file (imports inside functions count: they
    are how a circle gets papered over), except under ``if TYPE_CHECKING:`` (never run)."""
    modules = {_module(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.dump(node.test) for n in ast.walk(node)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in typing_only or not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}".strip(".")
                deps.add(sub if sub in modules else base)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    found.append(path)
                elif nxt not in path and nxt > start:
                    stack.append((nxt, path + [nxt]))
    return found


def test_the_core_has_no_import_circles():
    assert not cycles(import_graph()), cycles(import_graph())


def test_the_circle_finder_sees_a_circle_made_inside_a_function(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n")
    (tmp_path / "__init__.py").write_text("")
    assert cycles(import_graph(tmp_path)) == [["a", "b"]]


def test_the_core_folders_name_its_concerns():
    """``ls models/`` is the map: the concern folders, the package's public face and the error root."""
    folders = sorted(p.name for p in CORE.iterdir() if p.is_dir() and not p.name.startswith("__"))
    files = sorted(p.name for p in CORE.glob("*.py"))
    assert folders == ["backends", "critic", "grounding", "judging", "runtime", "toolkit"]
    assert files == ["__init__.py", "_moved.py", "errors.py"]


def test_judging_is_pure_it_never_asks_the_critic_or_loads_models():
    graph = import_graph()
    upward = {m: sorted(d for d in deps if not d.startswith(("judging", "errors")))
              for m, deps in graph.items() if m.startswith("judging")}
    assert not any(upward.values()), upward


def test_no_getattr_probes_on_backends():
    """Backends declare what they offer (backends/base.py); nothing asks them with getattr."""
    probe = re.compile(r"getattr\([^)]*backend")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in [*CORE.rglob("*.py"), *(ROOT / "nodes").rglob("*.py")]
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if probe.search(line)]
    assert not hits, hits


def test_every_error_the_core_defines_has_one_root():
    from rationalrewards.errors import RationalRewardsError
    roots = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.ClassDef) and node.name != "RationalRewardsError"
                    and re.search(r"(Error|Interrupted|NotFound|Needed)$", node.name)):
                bases = [ast.unparse(b) for b in node.bases]
                if "RationalRewardsError" not in bases and not any(b[0].isupper() and b.endswith(
                        ("Error", "NotFound", "Interrupted")) and b not in ("ValueError", "RuntimeError", "ImportError",
                                                                          "FileNotFoundError", "Exception")
                        for b in bases):
                    roots.append(f"{path.relative_to(ROOT)}: {node.name}({', '.join(bases)})")
    assert not roots, roots
    from rationalrewards.backends.openai_server import ServerTimeout
    from rationalrewards.runtime.checkpoints import CheckpointNotFound
    assert issubclass(ServerTimeout, RationalRewardsError) and issubclass(CheckpointNotFound, FileNotFoundError)


def test_old_module_paths_are_the_same_modules_for_one_release():
    import importlib
    import rationalrewards.runtime.loader as new_loader
    from rationalrewards._moved import MOVED
    assert importlib.import_module("rationalrewards.loader") is new_loader        # public: no warning
    from rationalrewards.loader import load_critic                                # the documented entry point
    assert load_critic is new_loader.load_critic
    for old, new in MOVED.items():
        if old in ("flow_factory",):      # imports Flow-Factory itself (an optional framework)
            continue
        with pytest.warns(DeprecationWarning) if old not in ("loader", "reward") else _no_warning():
            assert importlib.import_module(f"rationalrewards.{old}") is importlib.import_module(f"rationalrewards.{new}")
    assert importlib.import_module("rationalrewards.toolkit.cli").__spec__.name == "rationalrewards.toolkit.cli"


class _no_warning:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("error", DeprecationWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


# --- the contract -------------------------------------------------------------------------------------

@pytest.fixture(params=["transformers", "openai-server", "comfyui"])
def backend(request, qwen3_critic, tmp_path_factory):
    """Every backend of the pack, each answering the same tiny checkpoint (the server one through a fake
    OpenAI peer that replies with what the request's forced answer asks, so the contract is the same; the
    ComfyUI one where a ComfyUI with native Qwen3-VL is present: RR_COMFYUI_TREE, its own pytest process)."""
    if request.param == "transformers":
        yield qwen3_critic.backend
        return
    if request.param == "comfyui":
        from tests.fixtures.native_tiny import native_test_backend
        yield native_test_backend(request.getfixturevalue("pack"), tmp_path_factory.mktemp("native"),
                                  request.getfixturevalue("monkeypatch").setitem)
        return
    with FakeOpenAI() as peer:
        yield OpenAIServerBackend(peer.url, "critic", timeout_s=10, backoff_s=0)


def _contract(backend):
    """(Backend, Critic, Item, Task, GenerationOptions) of the core ``backend`` was built on: ``rationalrewards``,
    or the pack's own copy of it as ComfyUI imports the pack (the native backend lives on the node side)."""
    import importlib
    module = type(backend).__module__
    root = "rationalrewards" if module.startswith("rationalrewards") else module.split(".nodes.")[0] + ".models"
    core = {m: importlib.import_module(f"{root}.{m}") for m in ("backends.base", "critic.critic", "judging.rubric")}
    return (core["backends.base"].Backend, core["critic.critic"].Critic, core["critic.critic"].Item,
            core["judging.rubric"].Task, core["backends.base"].GenerationOptions)


def test_every_backend_meets_the_declared_contract(backend):
    Backend, Critic, Item, Task, GenerationOptions = _contract(backend)
    GREEDY = GenerationOptions(max_new_tokens=600, temperature=0)
    assert isinstance(backend, Backend) and backend.name in ("transformers", "openai-server", "comfyui")
    assert isinstance(backend.model_name, str) and backend.model_name
    assert isinstance(backend.batch_size, int) and backend.batch_size >= 1
    assert isinstance(backend.concurrent, bool) and backend.max_concurrency >= 1
    assert backend.decoding_mode() in ("plain", "static", "compiled", "server")
    critic = Critic(backend=backend)
    img = Image.new("RGB", (64, 64), (200, 30, 30))
    reqs = [critic.prepare(Item(Task.T2I, "pointwise", p, (img,))) for p in ("a red square", "a red cat")]
    forced = [T2I_FULL, T2I_FULL.replace("## Score: 4", "## Score: 3", 1)]
    answers = backend.generate([r.chat for r in reqs], GREEDY, forced=forced)
    assert [parse_critique(a).to_dict()["dimensions"] for a in answers] == \
           [parse_critique(f).to_dict()["dimensions"] for f in forced]             # one answer per request, in order
    assert parse_critique(backend.complete(reqs[0].chat, GREEDY, forced=forced[1])).to_dict()["dimensions"] == \
           parse_critique(forced[1]).to_dict()["dimensions"]


def test_a_critic_refuses_a_backend_that_does_not_declare_the_contract():
    class Loose:
        name = "loose"

        def generate(self, requests, options, **kw):
            return [""] * len(requests)
    with pytest.raises(TypeError, match="Backend contract"):
        Critic(backend=Loose())


# --- one way through the critic ----------------------------------------------------------------------------

SCRIPT = AnswerScript.from_json(json.dumps([
    {"answer": T2I_FULL, "when_request_contains": "fox", "mode": "pointwise"},
    {"answer": "Winner: Image A", "when_request_contains": "fox", "mode": "pairwise"},
    {"answer": "REGION: tail | Physical and Visual Quality | severe", "mode": "defects"},
    {"answer": "ANCHORED", "mode": "anchored"}]))


def _recording(critic: Critic, monkeypatch) -> tuple[Critic, list]:
    """The critic with its backend's generate/complete wrapped to record (chat text, forced answer)."""
    seen: list = []
    backend = critic.backend
    lock = threading.Lock()
    gen, comp = backend.generate, backend.complete

    def generate(requests, options, *, forced=None, **kw):
        with lock:
            seen.extend(zip([r.text for r in requests], forced or [None] * len(requests)))
        return gen(requests, options, forced=forced, **kw)

    def complete(request, options, *, forced=None, **kw):
        with lock:
            seen.append((request.text, forced))
        return comp(request, options, forced=forced, **kw)
    monkeypatch.setattr(backend, "generate", generate)
    monkeypatch.setattr(backend, "complete", complete)
    return critic.with_script(SCRIPT), seen


def test_every_caller_reaches_the_backend_through_prepare(qwen3_critic, monkeypatch, tmp_path):
    """Critique, compare, the dispatcher, the tournament, the follow-up and PARROT's teacher all send what
    ``Critic.prepare`` makes of their item: the same chat text and the same scripted answer."""
    from rationalrewards.toolkit.parrot import Teacher, _Ask
    from rationalrewards.toolkit.preferences import PreferencePair

    critic, seen = _recording(qwen3_critic, monkeypatch)
    modes = []
    real = Critic.prepare
    monkeypatch.setattr(Critic, "prepare", lambda self, item: modes.append(item.mode) or real(self, item))
    img, other = Image.new("RGB", (64, 64), (200, 30, 30)), Image.new("RGB", (64, 64), (30, 30, 200))
    img.save(tmp_path / "a.png")
    other.save(tmp_path / "b.png")
    [crit] = critic.critique([img], "a red fox", GREEDY)
    critic.compare(img, other, "a red fox", GREEDY)
    with Dispatcher(critic) as pool:
        [outcome] = pool.map([Item(Task.T2I, "pointwise", "a red fox", (img,))], GREEDY)
    pairwise_rank(critic, [img, other], "a red fox", GREEDY)
    regions = ask_regions(critic, crit, "a red fox", img)
    pair = PreferencePair("p1", "a red fox", tmp_path / "a.png", tmp_path / "b.png", "A")
    [anchored] = Teacher(critic, GREEDY).ask([_Ask("p1", "anchor", pair, ("A", "B"), {"preferred": "A"}, "a red fox")])
    assert modes == ["pointwise", "pairwise", "pointwise", "pairwise", "defects", "anchored"]

    pointwise = real(critic, Item(Task.T2I, "pointwise", "a red fox", (img,)))
    pairwise = real(critic, Item(Task.T2I, "pairwise", "a red fox", (img, other)))
    sent = [text for text, _ in seen]
    assert sent.count(pointwise.chat.text) == 2 and sent.count(pairwise.chat.text) == 2   # the same text on every path
    assert {f for t, f in seen if t == pointwise.chat.text} == {T2I_FULL}
    assert {f for t, f in seen if t == pairwise.chat.text} == {"Winner: Image A"}
    assert outcome.parsed().record == crit.record and crit.record["template"]["name"] == "t2i_pointwise"
    assert outcome.parsed().to_dict()["image_size"] == crit.to_dict()["image_size"]    # one record shape
    assert [p.text for p in regions.phrases] == ["tail"]               # the defects rule, not the critique rule
    assert anchored.startswith("ANCHORED")
    assert any(t.startswith(pairwise.chat.text.rstrip()[:40]) and "preferred Image A" in t for t in sent)


def test_a_rule_without_a_mode_answers_critiques_only():
    script = AnswerScript.from_json('[{"answer": "ANY"}]')
    assert script.answer_for(Task.T2I, "pointwise", "x") == "ANY" and script.answer_for(Task.T2I, "pairwise", "x") == "ANY"
    for mode in ("defects", "anchored", "consistency", "projection"):
        assert script.answer_for(Task.T2I, mode, "x") is None
