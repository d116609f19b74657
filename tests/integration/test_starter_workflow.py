"""The starter workflow (workflows/critique_my_image.json): an image the artist already has, the critic,
the critique card. It runs with no generator model at all."""
from __future__ import annotations

import pytest
from PIL import Image

from tests.comfy_server import outputs
from tests.twins import for_tests, insert_replay, load_twin, pointwise_answer

pytestmark = pytest.mark.integration


def test_the_starter_needs_no_generator_and_critiques_an_uploaded_image(comfy_server, models_dir):
    api = load_twin("critique_my_image")
    assert {n["class_type"] for n in api.values()} == {"LoadImage", "RR_LoadCritic", "RR_CritiqueImage"}
    seed = comfy_server.fresh_seed()
    name = comfy_server.upload_image(Image.new("RGB", (96, 64), (seed % 255, 90, 30)), name=f"starter_{seed}.png")
    script = [{"answer": pointwise_answer(3.25, 2.75, refined=f"a sharper fox {seed}"),
               "when_request_contains": "red fox"}]
    entry = comfy_server.run(insert_replay(for_tests(api, models_dir, seed, image=name, max_new_tokens=400), script),
                             timeout=180)
    [card] = outputs(entry)["3"]["rr_critiques"]
    assert [d["score"] for d in card["dimensions"]] == [3.25, 2.75, None]
    assert card["refined_request"] == f"a sharper fox {seed}"


def test_the_starter_with_the_real_tiny_model_marks_what_it_could_not_read(comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    name = comfy_server.upload_image(Image.new("RGB", (64, 64), (20, seed % 255, 200)), name=f"starter_raw_{seed}.png")
    entry = comfy_server.run(for_tests(load_twin("critique_my_image"), models_dir, seed, image=name), timeout=180)
    [card] = outputs(entry)["3"]["rr_critiques"]
    assert all(d["status"] == "missing" for d in card["dimensions"]) and card["warnings"]
