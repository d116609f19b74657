"""The harness itself: a real ComfyUI starts, lists its core nodes and runs a tiny SD1.5 graph."""
from __future__ import annotations

import pytest

from tests.comfy_server import (ExecutionFailed, Graph, PromptRejected, cached_nodes, execution_error, images,
                                outputs, txt2img_graph)

pytestmark = pytest.mark.integration


def test_object_info_lists_core_nodes(comfy_server):
    info = comfy_server.object_info()
    for node in ("CheckpointLoaderSimple", "CLIPTextEncode", "KSampler", "VAEDecode", "PreviewImage"):
        assert node in info, f"{node} missing from /object_info"
    assert len(info) > 300  # core + comfy_extras


def test_tiny_checkpoint_is_listed(comfy_server, models_dir):
    info = comfy_server.object_info("CheckpointLoaderSimple")["CheckpointLoaderSimple"]
    assert models_dir.checkpoint in info["input"]["required"]["ckpt_name"][0]
    assert models_dir.checkpoint_path.is_file()
    assert (models_dir.critic_path / "config.json").is_file()


def test_txt2img_graph_runs_and_previews_an_image(comfy_server, models_dir):
    graph, nodes = txt2img_graph(models_dir.checkpoint, seed=comfy_server.fresh_seed())
    entry = comfy_server.run(graph, timeout=120)
    assert entry["status"]["status_str"] == "success"
    assert execution_error(entry) is None
    out = outputs(entry)
    assert nodes["output"].id in out
    refs = images(entry, nodes["output"].id)
    assert len(refs) == 1 and refs[0]["type"] == "temp"
    img = comfy_server.fetch_image(refs[0])
    assert img.size == (64, 64)


def test_invalid_prompt_is_rejected_with_node_errors(comfy_server):
    graph, nodes = txt2img_graph("does-not-exist.ckpt", seed=comfy_server.fresh_seed())
    with pytest.raises(PromptRejected) as exc:
        comfy_server.queue(graph)
    assert exc.value.status == 400
    assert nodes["ckpt"].id in exc.value.node_errors


def test_runtime_failure_reports_node_and_message(comfy_server):
    g = Graph()
    img = g.node("EmptyImage", width=8, height=8, batch_size=1, color=comfy_server.fresh_seed() % 0xFFFFFF)
    save = g.node("SaveImage", images=img, filename_prefix="../../outside-the-output-folder")
    entry = comfy_server.run(g, check=False)
    assert entry["status"]["status_str"] == "error"
    err = execution_error(entry)
    assert err is not None and err["node_id"] == save.id and err["node_type"] == "SaveImage"
    assert "outside the output folder" in err["exception_message"]
    with pytest.raises(ExecutionFailed):
        comfy_server.run(g)  # same graph, check=True (an errored node is not cached)


def test_upload_image_round_trip(comfy_server, models_dir):
    from PIL import Image
    name = comfy_server.upload_image(Image.new("RGB", (32, 24), (200, 30, 30)))
    assert (models_dir.input_dir / name).is_file()
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}  # plain API dicts work too
    entry = comfy_server.run(prompt)
    img = comfy_server.fetch_image(images(entry, "2")[0])
    assert img.size == (32, 24)


def test_cache_free_and_interrupt(comfy_server, models_dir):
    graph, nodes = txt2img_graph(models_dir.checkpoint, seed=comfy_server.fresh_seed())
    assert cached_nodes(comfy_server.run(graph)) == []
    again = comfy_server.run(graph)                    # identical graph: nothing runs again ...
    assert nodes["sampler"].id in cached_nodes(again)
    assert images(again, nodes["output"].id)           # ... yet 0.3.75 still reports the cached ui output
    comfy_server.free(unload_models=True, free_memory=True)
    assert cached_nodes(comfy_server.run(graph)) == []  # caches dropped: it all ran again
    comfy_server.interrupt()                            # nothing running: a no-op
    assert comfy_server.server.alive()


def test_pack_import_error_is_detected_from_the_log(comfy_server, tmp_path):
    from tests.comfy_server import ComfyServer
    log = tmp_path / "fake.log"
    log.write_text("Traceback (most recent call last):\n  File \"x.py\"\nImportError: boom\n"
                   "Cannot import /b/custom_nodes/ComfyUI-RationalRewards module for custom nodes: boom\n")
    assert "ImportError: boom" in ComfyServer(tmp_path, log).custom_node_import_error()
    err = comfy_server.pack_import_error()
    assert err is None or "Traceback" in err  # the real server's log parses either way
