"""Any VLM as the critic: the published prompt as chat text for a text generator (core TextGenerate, other
VLM packs), and Read Critique, which turns the answer text back into the pack's critique data and scores.

So the card, Refine, the loops, Save and Localise work with whatever VLM node a user already has: the
prompt is rendered by the same ``Critic.prepare`` as every critique, and the answer is read by the same
parser, so a RationalRewards checkpoint run by ComfyUI's TextGenerate gives the same data as the pack's
own critic would for the same answer.
"""
from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io

from ..models.critic.chat_text import PromptsOnly, chat_text
from ..models.critic.critic import Critic, Item
from ..models.critic.qwen_resize import fit_processor
from ..models.judging.cards import critiques_card
from ..models.judging.parser import parse_critique
from ..models.judging.rubric import Task, dimensions_for
from ..models.runtime.checkpoints import AUTO_MAX_PIXELS, RR_TRAINED_MAX_PIXELS
from .common import CATEGORY, CritiqueSet, CritiqueType, fail, naming, template_dirs, to_pil_list, user_errors, weights_input

READ = "Read Critique"
PROMPT = "Critic Prompt as Text"
TASKS = {"text-to-image": Task.T2I, "edit": Task.EDIT}
# Read Critique's score outputs: every dimension of either task, in the Edit rubric's order (T2I has no
# Image Faithfulness: NaN there)
ALL_DIMENSIONS = dimensions_for(Task.EDIT)


class CriticPrompt(io.ComfyNode):
    """The published critique prompt as one chat text (system + user, images in place) for core TextGenerate."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_CriticPrompt",
            **naming("Critic Prompt as Text", "Generate Text", "VLM prompt", "TextGenerate"),
            category=CATEGORY + "/any VLM",
            description="Writes the critique prompt RationalRewards was trained on as chat text (system message, "
                        "then your prompt with each image in place), plus the images sized as the critic expects. "
                        "Connect both to ComfyUI's Generate Text (TextGenerate) with a RationalRewards file loaded by "
                        "Load CLIP; turn its 'use_default_template' off (the text is already templated), set "
                        "max_length to 2048, then read its answer with Read Critique.",
            inputs=[
                io.Image.Input("image", tooltip="The image to judge (one image)"),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The prompt (or editing instruction) the image was made from"),
                io.Image.Input("source", display_name="before (source, for edits)", optional=True,
                               tooltip="Optional: the image before editing. Connected, the Edit prompt is written "
                                       "(source first, then the edited image)"),
                io.Int.Input("max_pixels", display_name="max image pixels (-1 = as trained)", default=AUTO_MAX_PIXELS,
                             min=AUTO_MAX_PIXELS, max=16_777_216, optional=True,
                             tooltip=f"Images above this many pixels are scaled down first (-1: "
                                     f"{RR_TRAINED_MAX_PIXELS:,}, what RationalRewards was trained on), then snapped "
                                     "to multiples of 32 px as the checkpoint's processor does"),
            ],
            outputs=[
                io.String.Output(display_name="chat_text",
                                 tooltip="Starts with <|im_start|>, so TextGenerate adds no template; each "
                                         "<|image_pad|> takes the next image of 'images'"),
                io.Image.Output(display_name="images", tooltip="The images in the order the text places them"),
            ],
        )

    @classmethod
    def execute(cls, image, prompt: str, source=None, max_pixels: int = AUTO_MAX_PIXELS) -> io.NodeOutput:
        with user_errors(PROMPT):
            judged = to_pil_list(image, PROMPT)
            src = to_pil_list(source, PROMPT, "source") if source is not None else None
            if len(judged) != 1 or (src is not None and len(src) != 1):
                raise fail(PROMPT, "give one image (and one source): TextGenerate answers one prompt at a time")
            pixels = RR_TRAINED_MAX_PIXELS if max_pixels < 0 else (max_pixels or None)
            critic = Critic(PromptsOnly(), max_pixels=pixels, template_dir=template_dirs())
            task = Task.EDIT if src else Task.T2I
            request = critic.prepare(Item(task, "pointwise", prompt, tuple(src or []) + (judged[0],)))
        images = [fit_processor(img) for img in request.chat.images]
        if len({img.size for img in images}) > 1:
            sizes = " and ".join(f"{img.width}x{img.height}" for img in images)
            raise fail(PROMPT, f"the source and the edited image come out at different sizes ({sizes}), and "
                               "TextGenerate takes one image batch of one size: resize the source to the edited "
                               "image's size (Upscale Image) first")
        batch = torch.from_numpy(np.stack([np.asarray(img, dtype=np.float32) / 255.0 for img in images]))
        return io.NodeOutput(chat_text(request.chat), batch)


class ReadCritique(io.ComfyNode):
    """Any text (TextGenerate, Ollama / QwenVL packs, a pasted answer) -> critique data and scores."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        outputs = [io.Float.Output(display_name=d.title, tooltip=f"{d.title} on the 1-4 scale; NaN when N/A, "
                                                                 "unreadable or not part of the task")
                   for d in ALL_DIMENSIONS]
        return io.Schema(
            node_id="RR_ReadCritique",
            **naming("Read Critique", "VLM answer", "Ollama", "parse", "score", shown=("VLM answer",)),
            category=CATEGORY + "/any VLM",
            description="Reads a critique written in the RationalRewards layout by any text generator (ComfyUI's "
                        "Generate Text, an Ollama or QwenVL node, a pasted answer) into scores and critique data, "
                        "so the card, Refine Prompt, the refine loop, Save Critique and Localise Defects work with "
                        "it. Scores come from the pack's parser: a score it cannot read is NaN, never guessed.",
            is_output_node=True,
            inputs=[
                io.String.Input("text", multiline=True, default="",
                                tooltip="The critic's answer: connect a text output, or paste it"),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The prompt (or editing instruction) the image was judged against"),
                io.Combo.Input("task", options=list(TASKS), default="text-to-image",
                               tooltip="Which rubric the answer follows: text-to-image (3 dimensions) or edit "
                                       "(adds Image Faithfulness)"),
                weights_input(),
                io.Image.Input("image", optional=True,
                               tooltip="Optional: the judged image, carried in critique_data for Save Critique, "
                                       "Localise Defects and the loop"),
                io.Image.Input("source", display_name="before (source, for edits)", optional=True,
                               tooltip="Optional: the image before editing"),
            ],
            outputs=outputs + [
                io.Float.Output(display_name="overall",
                                tooltip="(weighted mean of non-N/A scores - 1) / 3, in [0, 1]; NaN when a score "
                                        "is missing"),
                io.String.Output(display_name="critique", tooltip="Readable critique: warnings first"),
                io.String.Output(display_name="refined_prompt",
                                 tooltip="The critic's refined request; the original prompt when it wrote none"),
                CritiqueType.Output(display_name="critique_data",
                                    tooltip="Structured critique for Refine / Localise / Save / the loop"),
            ],
        )

    @classmethod
    def execute(cls, text: str, prompt: str, task: str, weights: str, image=None, source=None) -> io.NodeOutput:
        if task not in TASKS:
            raise fail(READ, f"task must be one of {', '.join(TASKS)}, not {task!r}")
        if not isinstance(text, str) or not text.strip():
            raise fail(READ, "the text is empty; connect the answer of a text generator (e.g. Generate Text after "
                             "Critic Prompt as Text) or paste a critique")
        if image is not None and image.shape[0] != 1:
            raise fail(READ, f"image holds {image.shape[0]} images for one critique text; connect the one image "
                             "the text judges")
        critique = parse_critique(text, TASKS[task])      # a parsed text claims no template: its record is empty
        data = CritiqueSet([critique], [prompt], weights, images=image, sources=source)
        scores = [critique.score(d.key) for d in ALL_DIMENSIONS]
        return io.NodeOutput(*scores, critique.overall(weights), critique.report(weights),
                             critique.refined_request or prompt, data, ui=critiques_card([critique], [prompt], weights))
