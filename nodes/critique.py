"""Critique image (text-to-image) and Critique edit (source + edited): per-dimension scores."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..models.judging.cards import critiques_card
from ..models.judging.critique import Critique
from ..models.judging.rubric import Task, dimensions_for
from .common import (CATEGORY, CRITIC_TOOLTIP, check_critic, CriticType, CritiqueSet, CritiqueType, generating, generation_inputs,
                     naming, options_from, critic_images, user_errors, weights_input)


def score_outputs(task: Task) -> list:
    outs = [io.Float.Output(display_name=d.title, is_output_list=True,
                            tooltip=f"{d.title} on the 1-4 scale; NaN when N/A or unreadable (one per image)")
            for d in dimensions_for(task)]
    return outs + [
        io.Float.Output(display_name="overall", is_output_list=True,
                        tooltip="(weighted mean of non-N/A scores - 1) / 3, in [0, 1]; NaN when a score is missing"),
        io.String.Output(display_name="critique", is_output_list=True,
                         tooltip="Readable critique: warnings first, then scores and justifications"),
        io.String.Output(display_name="refined_prompt", is_output_list=True,
                         tooltip="The critic's refined request; the original prompt when it wrote none"),
        CritiqueType.Output(display_name="critique_data",
                            tooltip="Structured critiques for Refine / Localise nodes"),
    ]


def critique_outputs(crits: list[Critique], prompts: list[str], weights: str, task: Task,
                     data: CritiqueSet) -> io.NodeOutput:
    columns = [[c.score(d.key) for c in crits] for d in dimensions_for(task)]
    overall = [c.overall(weights) for c in crits]
    texts = [c.report(weights) for c in crits]
    refined = [c.refined_request or p for c, p in zip(crits, prompts)]
    # thumbnails of the judged images for the card (not "images": the frontend would draw those on the node too)
    thumbs = ui.PreviewImage(data.images).as_dict()["images"] if data.images is not None else []
    return io.NodeOutput(*columns, overall, texts, refined, data,
                         ui=critiques_card(crits, prompts, weights) | {"rr_images": thumbs})


class CritiqueImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_CritiqueImage",
            **naming("Critique Image", "judge", "quality", "rate image", "evaluate image", "image reward", "feedback",
                     shown=("score", "aesthetic")),
            category=CATEGORY,
            description="Text-to-image critique: per-dimension justifications and 1-4 scores, a summary and a "
                        "refined prompt. A batch is critiqued image by image (batched on the GPU).",
            is_output_node=True,
            inputs=[
                CriticType.Input("critic", tooltip=CRITIC_TOOLTIP),
                io.Image.Input("image", tooltip="The image to judge: one image or a batch (each is critiqued against the prompt). "
                                               "Connect Load Image to judge a picture you already have."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The prompt the image was made from (what it should show): the critic "
                                        "judges the image against it"),
                weights_input(),
                *generation_inputs(),
            ],
            outputs=score_outputs(Task.T2I),
        )

    @classmethod
    def execute(cls, critic, image, prompt: str, weights: str, max_new_tokens: int, temperature: float,
                seed: int) -> io.NodeOutput:
        node = "Critique Image"
        handle = check_critic(critic, node)
        with user_errors(node):
            images = critic_images(image, node)
            options = options_from(max_new_tokens, temperature, seed)
            with generating(handle, options, len(images), image, node=node) as hooks:
                crits = handle.critic.critique(images, prompt, options, **hooks)
        prompts = [prompt] * len(crits)
        data = CritiqueSet(crits, prompts, weights, images=image)
        return critique_outputs(crits, prompts, weights, Task.T2I, data)


class CritiqueEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_CritiqueEdit",
            **naming("Critique Edit", "score", "rate edit", "evaluate edit", "edit reward", "image editing",
                     shown=("judge", "quality")),
            category=CATEGORY,
            description="Image-editing critique of a source/edited pair on four dimensions (adds Image "
                        "Faithfulness). A source batch of 1 is used for every edited image.",
            is_output_node=True,
            inputs=[
                CriticType.Input("critic", tooltip=CRITIC_TOOLTIP),
                io.Image.Input("source", display_name="before (source)",
                               tooltip="The image before editing (one for every edit, or one per edited image)"),
                io.Image.Input("edited", display_name="after (edited)", tooltip="The edited image(s) to judge"),
                io.String.Input("instruction", multiline=True, default="",
                                tooltip="The editing instruction that produced the edited image"),
                weights_input(),
                *generation_inputs(),
            ],
            outputs=score_outputs(Task.EDIT),
        )

    @classmethod
    def execute(cls, critic, source, edited, instruction: str, weights: str, max_new_tokens: int,
                temperature: float, seed: int) -> io.NodeOutput:
        node = "Critique Edit"
        handle = check_critic(critic, node)
        with user_errors(node):
            sources = critic_images(source, node, "source")
            edits = critic_images(edited, node, "edited")   # the core uses one source for all, or one each
            options = options_from(max_new_tokens, temperature, seed)
            with generating(handle, options, len(edits), source, edited, node=node) as hooks:
                crits = handle.critic.critique(edits, instruction, options, sources=sources, **hooks)
        prompts = [instruction] * len(crits)
        data = CritiqueSet(crits, prompts, weights, images=edited, sources=source)
        return critique_outputs(crits, prompts, weights, Task.EDIT, data)
