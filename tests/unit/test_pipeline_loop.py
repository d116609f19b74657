"""`rationalrewards refine`: the core loop around a tiny diffusers pipeline (T2I and img2img), with
the tiny critic answering from a script, so the scores rise (or fall) over rounds on purpose."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rationalrewards.backends.base import GenerationOptions
from rationalrewards.toolkit.cli import main
from rationalrewards.judging.loop import StopRule
from rationalrewards.toolkit.pipeline_loop import (LoopSettings, PipelineNotFound, load_pipeline, pipeline_generator,
                                           read_prompts, run_loop)
from rationalrewards.critic.script import AnswerScript, Rule

OPTIONS = GenerationOptions(max_new_tokens=300, temperature=0.0)
CALL = {"num_inference_steps": 2, "guidance_scale": 1.0}


def critique(tf: float, pq: float, refined: str, edit: bool = False) -> str:
    dims = [("Text Faithfulness", tf)] + ([("Image Faithfulness", 3.0)] if edit else []) + [
        ("Physical and Visual Quality", pq), ("Text Rendering", "N/A")]
    out = ["# Detailed Judgement"]
    for i, (title, score) in enumerate(dims, 1):
        out += [f"{i}. {title}:", "## Justification: seen", f"## Score: {score}"]
    return "\n".join(out + ["# Summary: ok", "## Refined Request: " + refined])


RISING = [Rule(critique(2, 2, "a cat wearing a hat"), "a cat", mode="pointwise"),
          Rule(critique(2.5, 3, "a cat wearing a hat, soft light"), "wearing a hat", mode="pointwise"),
          Rule(critique(3.5, 3.5, "a cat wearing a hat, soft light, detailed"), "wearing a hat, soft light",
               mode="pointwise")]


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    from tests.fixtures.tiny_diffusers import build_tiny_pipelines
    return build_tiny_pipelines(tmp_path_factory.mktemp("pipelines"))


def _record_prompts(monkeypatch, cls) -> list[str]:
    seen: list[str] = []
    original = cls.encode_prompt

    def encode_prompt(self, prompt, *args, **kwargs):
        seen.append(prompt)
        return original(self, prompt, *args, **kwargs)
    monkeypatch.setattr(cls, "encode_prompt", encode_prompt)
    return seen


def test_t2i_refined_prompts_reach_the_pipeline_and_the_score_rises(pipelines, qwen3_critic, monkeypatch, tmp_path):
    pipe = load_pipeline(str(pipelines[0]))
    seen = _record_prompts(monkeypatch, type(pipe))
    critic = qwen3_critic.with_script(AnswerScript(tuple(RISING)))
    result = run_loop(pipeline_generator(pipe, **CALL), critic, "a cat", LoopSettings(seed=7), options=OPTIONS)
    h = result.history
    assert seen == ["a cat", "a cat wearing a hat", "a cat wearing a hat, soft light"]
    assert [r.prompt for r in h.rounds] == seen
    overall = [r.overall for r in h.rounds]
    assert overall == sorted(overall) and overall[0] < overall[-1]
    assert h.best == 2 and result.best_prompt == seen[2] and "meets the stop rule" in h.stop_reason
    assert [r.seed for r in h.rounds] == [7, 7, 7]          # seed policy "same", as published
    assert all(img.size == (64, 64) for img in result.images)


def test_the_best_round_is_kept_when_a_later_round_is_worse(pipelines, qwen3_critic, tmp_path):
    rules = (Rule(critique(3, 2.5, "a dog running"), "a dog", mode="pointwise"),
             Rule(critique(2, 2, "a dog running fast"), "a dog running", mode="pointwise"))
    out = tmp_path / "out"
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"answer": r.answer, "when_request_contains": r.when_request_contains,
                                   "mode": r.mode} for r in rules]))
    assert main(["refine", "--pipeline", str(pipelines[0]), "--model", "tiny-qwen3vl", "--models-dir",
                 str(qwen3_critic.backend.source).rsplit("/", 1)[0], "--replay", str(script), "--prompt", "a dog",
                 "--out", str(out), "--steps", "2", "--guidance", "1", "--seed-policy", "increment",
                 "--max-new-tokens", "300", "--temperature", "0"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["prompt"] for r in history["rounds"]] == ["a dog", "a dog running"]
    assert [r["seed"] for r in history["rounds"]] == [0, 1]
    assert history["best"] == 0 and history["best_prompt"] == "a dog" and "did not improve" in history["stop_reason"]
    best, first, second = (np.asarray(Image.open(out / n)) for n in ("best.png", "round_00.png", "round_01.png"))
    assert np.array_equal(best, first) and not np.array_equal(best, second)


def test_img2img_edit_gets_the_source_and_the_refined_instruction(pipelines, qwen3_critic, monkeypatch):
    pipe = load_pipeline(str(pipelines[0]), edit=True)         # a T2I folder turned into its img2img sibling
    assert type(pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    seen = _record_prompts(monkeypatch, type(pipe))
    rules = (Rule(critique(2, 3, "make it night, add stars", edit=True), "make it night", mode="pointwise"),
             Rule(critique(3.5, 3.5, "make it night, add stars", edit=True), "night, add stars", mode="pointwise"))
    critic = qwen3_critic.with_script(AnswerScript(rules))
    source = Image.new("RGB", (64, 64), (200, 180, 40))
    result = run_loop(pipeline_generator(pipe, source, strength=0.6, **CALL), critic, "make it night",
                      LoopSettings(rule=StopRule(("text_faithfulness", "image_faithfulness", "physical_quality"))),
                      source=source, options=OPTIONS)
    assert seen == ["make it night", "make it night, add stars"]
    assert result.critiques[0].task.value == "edit" and result.history.best == 1
    assert "image_faithfulness" in result.history.rounds[0].scores


def test_prompt_list_runs_every_prompt_and_resumes(pipelines, qwen3_critic, tmp_path, monkeypatch, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\na cat\na cat wearing a hat, soft light\n")
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"answer": r.answer, "when_request_contains": r.when_request_contains}
                                  for r in RISING]))
    out = tmp_path / "runs"
    args = ["refine", "--pipeline", str(pipelines[0]), "--model", "tiny-qwen3vl", "--models-dir",
            str(qwen3_critic.backend.source).rsplit("/", 1)[0], "--replay", str(script), "--prompts", str(prompts),
            "--out", str(out), "--steps", "2", "--max-rounds", "2", "--max-new-tokens", "300", "--temperature", "0"]
    assert main(args) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["0000-a-cat", "0001-a-cat-wearing-a-hat-soft-light"]
    first = json.loads((out / folders[0] / "history.json").read_text())
    assert len(first["rounds"]) == 2 and "maximum of 2" in first["stop_reason"] and first["best"] == 1
    second = json.loads((out / folders[1] / "history.json").read_text())
    assert len(second["rounds"]) == 1 and second["done"]
    # a re-run finds both done: no critic, no pipeline is loaded
    monkeypatch.setattr("rationalrewards.toolkit.pipeline_loop.load_pipeline", lambda *a, **k: pytest.fail("loaded"))
    assert main(args) == 0
    assert "already done" in capsys.readouterr().out


def test_a_prompt_lists_own_seed_is_used_for_that_prompt_only(pipelines, qwen3_critic, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "a cat", "seed": 42}) + "\n" + json.dumps({"prompt": "a cat wearing a hat"})
                       + "\n")
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"answer": r.answer, "when_request_contains": r.when_request_contains}
                                  for r in RISING]))
    out = tmp_path / "runs"
    assert main(["refine", "--pipeline", str(pipelines[0]), "--model", "tiny-qwen3vl", "--models-dir",
                 str(qwen3_critic.backend.source).rsplit("/", 1)[0], "--replay", str(script), "--prompts", str(prompts),
                 "--out", str(out), "--steps", "2", "--max-rounds", "2", "--seed", "5", "--max-new-tokens", "300",
                 "--temperature", "0"]) == 0
    own, default = (json.loads((folder / "history.json").read_text()) for folder in sorted(out.iterdir()))
    assert [r["seed"] for r in own["rounds"]] == [42, 42]          # the list's seed, for every round of that prompt
    assert {r["seed"] for r in default["rounds"]} == {5}           # the next prompt is back on --seed


def test_offline_first_and_clear_errors(pipelines, tmp_path):
    with pytest.raises(PipelineNotFound, match="hf download nobody/no-such-pipeline"):
        load_pipeline("nobody/no-such-pipeline", [tmp_path])
    with pytest.raises(PipelineNotFound, match="model_index.json"):
        load_pipeline(str(tmp_path / "nothing-here"))
    pipe = load_pipeline(str(pipelines[0]))
    with pytest.raises(ValueError, match="takes no strength"):
        pipeline_generator(pipe, strength=0.5)
    with pytest.raises(ValueError, match="cannot edit"):
        pipeline_generator(pipe, Image.new("RGB", (64, 64)))
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "a fox", "seed": 3}\n{"id": "x"}\n')
    with pytest.raises(ValueError, match="p.jsonl:2"):
        read_prompts(jl)
