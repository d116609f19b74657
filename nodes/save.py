"""Save Critique: each judged image as a PNG with its critique in the metadata, and a JSON beside it."""
from __future__ import annotations

import json
import os
import uuid
from types import SimpleNamespace

import folder_paths
from comfy_api.latest import io, ui

from ..models.judging.saved import PNG_KEY, critique_record, record_json
from ..models.toolkit.outputs import OutputError, Staged
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
        output_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output_dir,
                                                                               batch.shape[2], batch.shape[1])
        name = name.replace("%batch_num%", "0")          # as ComfyUI names a one-image save
        results, records = [], []
        try:
            # the whole batch is staged and renamed into place at the end: a full disk leaves the folder as it
            # was (earlier saves intact, no part file under a final name), and the next Run saves it once
            with Staged(f"nothing of this batch was saved and the files saved before in {folder} are intact",
                        "press Run again") as stage:
                for i, critique in enumerate(critique_data.critiques):
                    final = f"{name}_{counter + i:05}_.png"
                    _save_png(batch[i:i + 1], subfolder, folder, final, stage, prompt,
                              extra | {PNG_KEY: critique_record(critique, critique_data.prompts[i],
                                                                critique_data.weights)})
                    record = critique_record(critique, critique_data.prompts[i], critique_data.weights, final)
                    stage.write_text(os.path.join(folder, os.path.splitext(final)[0] + ".json"),
                                     record_json(record) + "\n")
                    results.append(ui.SavedResult(final, subfolder, io.FolderType.output))
                    records.append(record)
        except OutputError as e:
            raise fail(NODE, str(e)) from None
        return io.NodeOutput(json.dumps(records, ensure_ascii=False), ui=ui.SavedImages(results))


def _save_png(image, subfolder: str, folder: str, final: str, stage: Staged, prompt, extra: dict) -> None:
    """One image through ComfyUI's own saver (its metadata chunks, --disable-metadata), under a temporary
    name in the target folder that ``stage`` renames to ``final``; the critique rides along as one more text
    chunk, as extra_pnginfo entries do."""
    stem = f".rr-partial-{uuid.uuid4().hex}"
    temporary = stage.path(os.path.join(folder, final), os.path.join(folder, f"{stem}_00001_.png"))
    metadata = SimpleNamespace(hidden=SimpleNamespace(prompt=prompt, extra_pnginfo=extra))
    [saved] = ui.ImageSaveHelper.save_images(image, os.path.join(subfolder, stem), io.FolderType.output, metadata)
    if saved["filename"] != os.path.basename(temporary):
        raise RuntimeError(f"ComfyUI saved {saved['filename']}, not {os.path.basename(temporary)}: its file naming "
                           "changed; update nodes/save.py")
