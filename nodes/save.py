"""Save Critique: each judged image as a PNG with its critique in the metadata, and a JSON beside it."""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import folder_paths
from comfy_api.latest import io, ui

from ..models.judging.saved import PNG_KEY, critique_record, record_json
from .common import CATEGORY, CritiqueType, fail, naming, require_critiques

NODE = "Save Critique"


class SaveCritique(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_SaveCritique",
            **naming("Save Critique", "save image with score", "save scores", "metadata"),
            category=CATEGORY,
            description="Saves each critiqued image to ComfyUI's output folder the way Save Image does (the "
                        "workflow in the PNG, unless ComfyUI runs with --disable-metadata), adds the critique to "
                        "the PNG's metadata, and writes the critique as a .json file beside it. The critique "
                        "records hold the request, scores and text only: no folders, URLs or keys.",
            is_output_node=True,
            inputs=[
                CritiqueType.Input("critique_data", display_name="critique",
                                   tooltip="critique_data from Critique Image / Critique Edit / Rank"),
                io.Image.Input("images", optional=True,
                               tooltip="Optional: the images to save (one per critique). Unconnected: the images "
                                       "the critique judged"),
                io.String.Input("filename_prefix", display_name="file name prefix", default="rationalrewards/critique",
                                tooltip="Like Save Image: a prefix inside ComfyUI's output folder; a '/' makes a "
                                        "subfolder"),
                io.Boolean.Input("embed_workflow", display_name="workflow in the PNG too", default=True,
                                 tooltip="On (default): the PNG also carries the workflow, as Save Image writes it "
                                         "(every input of the graph, model folder names included). Off: only the "
                                         "critique goes into the PNG"),
            ],
            outputs=[io.String.Output(display_name="critique_json",
                                      tooltip="The saved critiques as JSON (one record per image)")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
        )

    @classmethod
    def execute(cls, critique_data, filename_prefix: str, embed_workflow: bool = True, images=None) -> io.NodeOutput:
        require_critiques(critique_data, NODE, "a Critique or Rank node")
        images = critique_data.images if images is None else images
        if images is None:
            raise fail(NODE, "the critique carries no image; connect the images to save")
        batch = images if images.ndim == 4 else images.unsqueeze(0)
        if batch.shape[0] != len(critique_data):
            raise fail(NODE, f"{batch.shape[0]} images for {len(critique_data)} critiques; connect the images the "
                             "critique judged (one per critique), or leave 'images' unconnected")
        hidden = getattr(cls, "hidden", None)
        prompt = getattr(hidden, "prompt", None) if embed_workflow else None
        extra = dict(getattr(hidden, "extra_pnginfo", None) or {}) if embed_workflow else {}
        results, records = [], []
        for i, critique in enumerate(critique_data.critiques):
            record = critique_record(critique, critique_data.prompts[i], critique_data.weights)
            # ComfyUI's own saver (file names, counter, --disable-metadata, the prompt/workflow chunks);
            # the critique rides along as one more text chunk, as extra_pnginfo entries do
            metadata = SimpleNamespace(hidden=SimpleNamespace(prompt=prompt, extra_pnginfo=extra | {PNG_KEY: record}))
            [saved] = ui.ImageSaveHelper.save_images(batch[i:i + 1], filename_prefix, io.FolderType.output,
                                                     metadata)
            record = critique_record(critique, critique_data.prompts[i], critique_data.weights, saved["filename"])
            folder = os.path.join(folder_paths.get_output_directory(), saved["subfolder"])
            stem = os.path.splitext(saved["filename"])[0]
            with open(os.path.join(folder, stem + ".json"), "w", encoding="utf-8") as f:
                f.write(record_json(record) + "\n")
            results.append(saved)
            records.append(record)
        return io.NodeOutput(json.dumps(records, ensure_ascii=False), ui=ui.SavedImages(results))
