"""Load an API twin from tests/workflows/ and swap user-facing values for the tiny test ones.

The twins keep the values a user sees (real checkpoint names, 512 px, 20 steps, 2048 tokens);
this is the one place that lists what the tests change, so a twin can stay identical to its
UI file in workflows/.
"""
from __future__ import annotations

import json
from pathlib import Path

TWINS = Path(__file__).parent / "workflows"
UI_DIR = Path(__file__).parent.parent / "workflows"


def twin_names() -> list[str]:
    return sorted(p.name[:-len(".api.json")] for p in TWINS.glob("*.api.json"))


def load_twin(name: str) -> dict:
    return json.loads((TWINS / f"{name}.api.json").read_text())


def load_ui(name: str) -> dict:
    """The UI file of twin ``name`` (named by its title in the Templates browser)."""
    from scripts.workflow_layouts import ui_file
    return json.loads((UI_DIR / f"{ui_file(name)}.json").read_text())


def for_tests(api: dict, models, seed: int, *, image: str | None = None, max_new_tokens: int = 48,
              critic_override: dict | None = None) -> dict:
    """A copy of ``api`` that runs in seconds on CPU with the tiny models."""
    api = json.loads(json.dumps(api))
    for node in api.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = models.checkpoint
        elif kind == "RR_LoadCritic":
            inputs["checkpoint"] = models.critic
        elif kind in ("EmptyLatentImage", "EmptyImage"):
            inputs["width"], inputs["height"] = 64, 64
        elif kind == "KSampler":
            inputs["steps"] = 2
            if not isinstance(inputs["seed"], list):
                inputs["seed"] = seed
        elif kind in ("RR_RefineLoopStart", "RR_RepairLoopStart"):
            inputs["seed"] = seed
        elif kind == "LoadImage" and image is not None:
            inputs["image"] = image
        if "max_new_tokens" in inputs:
            inputs["max_new_tokens"] = max_new_tokens
        if kind in ("RR_CritiqueImage", "RR_CritiqueEdit", "RR_Rank", "RR_Compare") and not isinstance(
                inputs.get("seed"), list):
            inputs["seed"] = seed % 2**32
    return api


def shipped_workflow(name: str, models, seed: int, prompt: str | None = None, batch: int = 1) -> dict:
    """A UI workflow from workflows/ (what the browser tests load) with the tiny models' names, a tiny image
    size, 2 sampler steps at ``seed`` and, when given, ``prompt`` in its prompt box."""
    wf = load_ui(name.removesuffix(".json"))
    for n in wf["nodes"]:
        v = n.get("widgets_values")
        if n["type"] == "CheckpointLoaderSimple":
            v[0] = models.checkpoint
        elif n["type"] == "RR_LoadCritic":
            v[0] = models.critic
        elif n["type"] == "EmptyLatentImage":
            v[:3] = [64, 64, batch]
        elif n["type"] == "KSampler":
            v[:4] = [seed, "fixed", 2, 1.0]
        elif n["type"] == "PrimitiveStringMultiline" and prompt is not None:
            v[0] = prompt
    return wf


def add_previews(api: dict, sources: dict[str, list]) -> dict:
    """A copy of ``api`` with a PreviewAny node per ``{node id: [source id, slot]}``: what a test reads as
    text, now that the shipped workflows show it on the card instead of in PreviewAny nodes."""
    api = json.loads(json.dumps(api))
    for node_id, source in sources.items():
        assert node_id not in api, f"node id {node_id} is taken"
        api[node_id] = {"class_type": "PreviewAny", "inputs": {"source": list(source)}}
    return api


def insert_replay(api: dict, script: list[dict]) -> dict:
    """Route every RR_LoadCritic through an RR_ReplayAnswers node with ``script``."""
    api = json.loads(json.dumps(api))
    loaders = [nid for nid, n in api.items() if n["class_type"] == "RR_LoadCritic"]
    for nid in loaders:
        replay_id = f"{nid}99"
        api[replay_id] = {"class_type": "RR_ReplayAnswers", "inputs": {"critic": [nid, 0], "script": json.dumps(script)}}
        for other_id, node in api.items():
            if other_id == replay_id:
                continue
            for key, value in node["inputs"].items():
                if value == [nid, 0]:
                    node["inputs"][key] = [replay_id, 0]
    return api


def pointwise_answer(tf: float | str, pq: float | str, tr: float | str = "N/A", refined: str = "a better prompt",
                     justification: str = "looks right", if_: float | str | None = None) -> str:
    """A well-formed critique text (T2I; Edit when ``if_`` is given)."""
    dims = [("Text Faithfulness", tf)] + ([("Image Faithfulness", if_)] if if_ is not None else []) + [
        ("Physical and Visual Quality", pq), ("Text Rendering", tr)]
    body = "\n".join(f"{i}. {title}:\n## Justification: {justification}\n## Score: {score}"
                     for i, (title, score) in enumerate(dims, 1))
    return ("# User Request Analysis\nThe request.\n# Detailed Judgement\n" + body +
            "\n# Summary: a summary.\n# User Request Refinement:\n## Refinement Comments: be specific.\n"
            f"## Refined Request: {refined}")


def pairwise_answer(scores: list[tuple[float | str, float | str, str]]) -> str:
    titles = ["Text Faithfulness", "Physical and Visual Quality", "Text Rendering"]
    body = "\n".join(f"{i}. {t}:\n## Justification: because\n## Score A: {a}\n## Score B: {b}\n## Winner: {w}"
                     for i, (t, (a, b, w)) in enumerate(zip(titles, scores), 1))
    return "# User Request Analysis\nThe request.\n# Detailed Judgement\n" + body + "\n# Summary: done"
