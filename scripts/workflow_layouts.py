"""Hand-made canvas layouts of the shipped workflows: node boxes, groups and the notes that explain
each part. ``python -m scripts.workflow_format URL tests/workflows/X.api.json workflows/X.json``
combines a twin with its layout here into the UI file.

``title`` is the UI file's name in workflows/: ComfyUI's Templates browser shows a pack's template by
its file name and its thumbnail ``<title>.jpg`` beside it, in file-name order (so the starter is 1.).
Boxes are ``[x, y, width, height]`` of the node body (its title bar sits 30 px above ``y``). Each
workflow reads left to right, one group per step, and a note beside what it explains.
"""
from __future__ import annotations

# ---- the budget every layout fits (issue 22: "workflows that read at a fitted zoom on a 1600-px window") ----
# "Fit view" (the frontend's fitView: LGraphCanvas ds.fitToBounds) fills FIT_SHARE of the canvas with the
# nodes' bounds (title bars included, 10 px around). Below LOD_ZOOM the frontend draws nodes as blank boxes:
# LiteGraph.Canvas.MinFontSizeForLOD (default 8 px) / LiteGraph.NODE_TEXT_SIZE (14 px) at devicePixelRatio 1,
# read from comfyui-frontend-package 1.32.9 (it replaced LowQualityRenderingZoomThreshold, 0.6, in 1.26.7).
# On a 1600 x 900 window that frontend's canvas is the whole window (the menu floats over it).
CANVAS = (1600, 900)
FIT_SHARE = 0.75
LOD_ZOOM = 8 / 14
MAX_BOX = (round(CANVAS[0] * FIT_SHARE / LOD_ZOOM), round(CANVAS[1] * FIT_SHARE / LOD_ZOOM))  # (2100, 1181)
"""Largest [width, height] of a workflow's canvas: every node (with its title bar), note and group, less the
card room below a group's lowest node: Fit view frames the nodes, and that room, empty until a run, may run
below the fitted view."""
CARD_NODES = ("RR_CritiqueImage", "RR_CritiqueEdit", "RR_Compare", "RR_Rank", "RR_RefineLoopEnd", "RR_RepairLoopEnd")
CARD_ROOM = 400
"""Room kept free below a card node inside its group: its card (web/rr_card.js) grows the node downward
after a run. A critique card as first shown (bars, overall, summary, refined prompt, justifications
closed) is about 400 px; opening justifications grows it to its 640 px cap, beyond which it scrolls."""

BLUE, GREEN, PURPLE, ORANGE, YELLOW, GREY = "#3f789e", "#8A8", "#a1309b", "#b06634", "#b58b2a", "#444"

CRITIC_NOTE = """### The critic
**RationalRewards-8B-T2I** judges text-to-image results; **RationalRewards-8B-Edit** judges edits. Download once (about 17.5 GB each):

`hf download TIGER-Lab/RationalRewards-8B-T2I --local-dir ComfyUI/models/rationalrewards/RationalRewards-8B-T2I`

or switch on *download if missing*. It needs about 17.5 GB of free VRAM in bf16; on a 12-16 GB card set *quantize weights* to int8 (about 10.7 GB) or 4bit (about 7.3 GB; needs bitsandbytes), or run it from RAM on the CPU (slow). It shares the GPU with your generator: ComfyUI swaps them.

**First run:** loading takes a while; with *decoding speed mode* = auto on a CUDA GPU the first critique also compiles for a minute or more (the node shows what it is doing). Pick *plain* to skip compiling when you judge only a few images."""

CARD_NOTE = """### The result
After a run the node shows a **card**: one bar per dimension (1-4; 4 = no problem), the overall score (0-1), the critic's reasons (click to open) and a **refined prompt** with a Copy button.

Scores that could not be read say *unreadable*; Text Rendering is *N/A* when the prompt asks for no text. The outputs (scores, critique text, refined prompt) can be wired into other nodes."""

CRITIC_NOTE_SHORT = """### The critic
Download once (about 17.5 GB), or switch on *download if missing*:

`hf download TIGER-Lab/RationalRewards-8B-T2I --local-dir ComfyUI/models/rationalrewards/RationalRewards-8B-T2I`

It needs about 17.5 GB of free VRAM in bf16; on a 12-16 GB card set *quantize weights* to int8 or 4bit. The first run loads (and with *decoding speed mode* = auto compiles) for a while. More in *1. Critique my image*."""


CRITIC_NOTE_TINY = """### The critic
Download once (about 17.5 GB), or switch on *download if missing*: `hf download TIGER-Lab/RationalRewards-8B-T2I --local-dir ComfyUI/models/rationalrewards/RationalRewards-8B-T2I`. On a 12-16 GB card set *quantize weights* to int8 or 4bit. More in *1. Critique my image*."""

def ui_file(name: str) -> str:
    """workflows/ file name (without .json) of the twin ``name``: its title in the Templates browser."""
    return LAYOUTS[name]["title"]


LAYOUTS: dict[str, dict] = {
    # ---------------------------------------------------------------------------------------------
    "critique_my_image": {
        "title": "1. Critique my image (start here)",
        "nodes": {"1": [40, 410, 360, 400], "2": [460, 120, 400, 390], "3": [920, 120, 480, 310]},
        "notes": [
            {"id": 10, "title": "Start here", "box": [40, 120, 360, 230], "text": (
                "## Critique my image\n"
                "Judges a picture you already have: no generator model needed. **1** load the image, **2** pick "
                "the critic, **3** type the prompt the image was made from, then **Run**. The critique appears "
                "on the Critique Image node.")},
            {"id": 11, "box": [40, 870, 360, 200], "text": (
                "### Your image\nClick *choose file to upload* or drop an image here. Any size works: the critic "
                "scales large images down to the size it was trained on (*max image pixels* = -1 on the loader).")},
            {"id": 12, "box": [460, 570, 400, 420], "text": CRITIC_NOTE},
            {"id": 13, "box": [1460, 120, 360, 320], "text": (
                "### Critique\nType the **prompt the image was made from** (what it should show): the critic "
                "judges the image against it.\n\n" + CARD_NOTE.split("\n", 1)[1])},
        ],
        "groups": [{"title": "1 · Your image", "color": BLUE, "members": [10, "1", 11]},
                   {"title": "2 · The critic", "color": GREEN, "members": ["2", 12]},
                   {"title": "3 · Critique", "color": PURPLE, "members": ["3", 13]}],
    },
    # ---------------------------------------------------------------------------------------------
    "critique_generated_image": {
        "title": "2. Generate and critique",
        "nodes": {"1": [40, 410, 340, 100], "2": [40, 570, 340, 200], "4": [40, 830, 340, 130],
                  "3": [440, 120, 300, 90], "5": [440, 270, 300, 110], "6": [440, 440, 300, 300],
                  "7": [440, 800, 300, 50], "8": [800, 120, 400, 390], "9": [1260, 120, 480, 310],
                  "10": [1800, 480, 300, 360]},
        "notes": [
            {"id": 20, "title": "Start here", "box": [40, 120, 340, 230], "text": (
                "## Generate an image and critique it\n"
                "SD1.5 makes an image from the prompt, the critic judges it against the same prompt, and Save "
                "Critique keeps the image with its critique. Swap the generator for any model: keep the image "
                "and the prompt wired into Critique Image.")},
            {"id": 21, "box": [440, 910, 300, 200], "text": (
                "### Generator\nAny checkpoint works (SDXL, FLUX ...): replace these nodes with your own and "
                "connect your decoded IMAGE to Critique Image. The prompt node feeds both the generator and "
                "the critic, so they judge the same words.")},
            {"id": 22, "box": [800, 570, 400, 300], "text": CRITIC_NOTE_SHORT},
            {"id": 23, "box": [1800, 120, 300, 300], "text": CARD_NOTE},
            {"id": 24, "box": [1800, 900, 300, 230], "text": (
                "### Save Critique\nSaves the image into ComfyUI's output folder like Save Image, with the "
                "critique in the PNG's metadata and a .json beside it (scores and text only: no folders or "
                "keys). Turn off *workflow in the PNG too* to share the PNG without the workflow.")},
        ],
        "groups": [{"title": "1 · Generate (any model)", "color": BLUE, "members": [20, "1", "2", "3", "4", "5", "6",
                                                                                  "7", 21]},
                   {"title": "2 · The critic", "color": GREEN, "members": ["8", 22]},
                   {"title": "3 · Critique and save", "color": PURPLE, "members": ["9", 23, "10", 24]}],
    },
    # ---------------------------------------------------------------------------------------------
    "rank_batch": {
        "title": "3. Best of N (rank a batch)",
        "nodes": {"1": [40, 410, 340, 100], "2": [40, 570, 340, 200], "4": [40, 830, 340, 130],
                  "3": [440, 120, 300, 90], "5": [440, 270, 300, 110], "6": [440, 440, 300, 300],
                  "7": [440, 800, 300, 50], "8": [800, 120, 400, 390], "9": [1260, 120, 480, 360],
                  "10": [1800, 440, 300, 400]},
        "notes": [
            {"id": 20, "title": "Start here", "box": [40, 120, 340, 230], "text": (
                "## Best of N\n"
                "Generates a batch of candidates (*batch_size* on Empty Latent Image), the critic scores every "
                "one, and Rank Images sorts them best first. To rank **edits** of one image, connect the source "
                "image to Rank's *before (source, for edits)* input and load the Edit critic.")},
            {"id": 21, "box": [440, 910, 300, 200], "text": (
                "### Candidates\nRaise *batch_size* for more candidates; each costs one critique. Any generator "
                "works: connect its decoded IMAGE batch to Rank Images.")},
            {"id": 22, "box": [800, 570, 400, 300], "text": CRITIC_NOTE_SHORT},
            {"id": 23, "box": [1800, 120, 300, 260], "text": (
                "### Ranking card\nThumbnails best first with each one's rank, input index and overall score; "
                "click a candidate to read its critique. Unreadable critiques go last; ties keep the input "
                "order.")},
            {"id": 24, "box": [1800, 900, 300, 160], "text": (
                "### Keep the best\nSaves only the top image (*best*). Use *ranked* for the whole sorted batch.")},
        ],
        "groups": [{"title": "1 · Generate candidates", "color": BLUE, "members": [20, "1", "2", "3", "4", "5", "6",
                                                                                  "7", 21]},
                   {"title": "2 · The critic", "color": GREEN, "members": ["8", 22]},
                   {"title": "3 · Rank and keep the best", "color": PURPLE, "members": ["9", 23, "10", 24]}],
    },
    # ---------------------------------------------------------------------------------------------
    "t2i_refine_loop": {
        "title": "4. Refine loop (text to image)",
        "nodes": {"1": [390, 120, 380, 100], "4": [810, 120, 210, 90], "2": [390, 470, 380, 200],
                  "3": [810, 470, 210, 90], "5": [810, 620, 210, 110], "6": [810, 790, 210, 290],
                  "7": [810, 1140, 210, 50], "8": [40, 470, 290, 300], "9": [1070, 350, 360, 310],
                  "10": [1480, 380, 380, 350], "11": [1890, 120, 210, 330], "12": [1890, 510, 210, 330]},
        "notes": [
            {"id": 20, "title": "Start here", "box": [40, 120, 290, 250], "text": (
                "## Generate → critique → refine\n"
                "Each round generates from the prompt, the critic judges the image and writes a better prompt, "
                "and the next round uses it, until the image is good enough (Text Faithfulness and Physical and "
                "Visual Quality at 3 or more, as published) or *max rounds* is reached. The best round comes out, "
                "not the last.")},
            {"id": 21, "box": [390, 730, 380, 230], "text": (
                "### Loop Start\nType **your prompt** here. Its *prompt* output goes into your positive text "
                "encoder, *seed* into your sampler. Everything between Loop Start and Loop End reruns each "
                "round; loaders and the negative prompt are shared.")},
            {"id": 25, "box": [390, 280, 630, 70], "text": (
                "### Shared\nThe checkpoint and the negative prompt sit outside the loop: they load once and "
                "serve every round.")},
            {"id": 22, "box": [40, 830, 290, 330], "text": CRITIC_NOTE_SHORT},
            {"id": 23, "box": [1070, 120, 360, 170], "text": (
                "### Critique\nJudges each round's image against that round's prompt (wired from Loop Start). "
                "Its card shows the latest round.")},
            {"id": 24, "box": [1480, 120, 380, 200], "text": (
                "### Loop End\n*good enough when these* lists the scores that must reach the threshold, by their "
                "names on the card (checked when you queue). *next prompt* = merge keeps your LoRA tags, "
                "embeddings and (word:1.2) weights; *always keep* protects trigger words. The card shows every "
                "round and the prompt changes.")},
        ],
        "groups": [{"title": "Shared (runs once)", "color": GREY, "members": ["1", "4", 25]},
                   {"title": "1 · Loop: generate", "color": BLUE, "members": ["2", "3", "5", "6", "7", 21]},
                   {"title": "2 · The critic", "color": GREEN, "members": ["8", 22]},
                   {"title": "3 · Loop: critique", "color": PURPLE, "members": ["9", 23]},
                   {"title": "4 · Decide and keep the best", "color": ORANGE, "members": ["10", 24, "11", "12"]}],
    },
    # ---------------------------------------------------------------------------------------------
    "edit_refine_loop": {
        "title": "5. Refine loop (image edit)",
        "nodes": {"1": [390, 120, 330, 100], "5": [390, 280, 330, 90], "2": [768, 120, 262, 250],
                  "3": [390, 630, 380, 200], "4": [810, 630, 220, 88], "6": [810, 758, 220, 46],
                  "7": [810, 844, 220, 262], "8": [810, 1146, 220, 46], "9": [40, 470, 290, 300],
                  "10": [1090, 350, 340, 330], "11": [1490, 380, 380, 350], "12": [1890, 120, 210, 330],
                  "13": [1890, 510, 210, 330]},
        "notes": [
            {"id": 20, "title": "Start here", "box": [40, 120, 290, 250], "text": (
                "## Edit → critique → refine\n"
                "Each round edits the source image with the instruction, the Edit critic judges the edit, and the "
                "next round uses its refined instruction. One refinement (*max rounds* = 2) is the published "
                "setting.")},
            {"id": 21, "title": "Put your editing model here", "box": [390, 890, 380, 310], "text": (
                "### ⚠ Your editing model goes here\nThe SD1.5 img2img here (denoise 0.55) is only a **stand-in** "
                "so the graph runs anywhere. Use a real editing model, e.g. **Qwen-Image-Edit** "
                "(TextEncodeQwenImageEdit with the source image) or **FLUX.1 Kontext** (ReferenceLatent on the "
                "source latent), its loaders in the Shared group.\n\nKeep the wiring: Loop Start *prompt* → your "
                "instruction, *seed* → your sampler, your decoded image → Critique Edit *after (edited)* and Loop "
                "End *image*.")},
            {"id": 22, "box": [390, 430, 640, 88], "text": (
                "### Shared\nThe checkpoint, the negative prompt and the **source image** load once and serve "
                "every round. The source is also the *before* image the critic compares against.")},
            {"id": 23, "box": [40, 830, 290, 370], "text": CRITIC_NOTE_SHORT.replace("8B-T2I", "8B-Edit")},
            {"id": 24, "box": [1090, 120, 340, 170], "text": (
                "### Critique Edit\nJudges the edit against the source and the instruction on four dimensions "
                "(adds Image Faithfulness: was the rest kept?). The overall score uses *rl_edit* here, as the "
                "authors' editing RL did.")},
            {"id": 25, "box": [1490, 120, 380, 200], "text": (
                "### Loop End\nStops when the edit is good enough, when a round is no better, or after *max "
                "rounds*; returns the best round. *good enough when these* takes the names shown on the card.")},
        ],
        "groups": [{"title": "Shared (runs once)", "color": GREY, "members": ["1", "5", "2", 22]},
                   {"title": "1 · Loop: edit (stand-in for your editing model)", "color": BLUE,
                    "members": ["3", "4", "6", "7", "8", 21]},
                   {"title": "2 · The Edit critic", "color": GREEN, "members": ["9", 23]},
                   {"title": "3 · Loop: critique the edit", "color": PURPLE, "members": ["10", 24]},
                   {"title": "4 · Decide and keep the best", "color": ORANGE, "members": ["11", 25, "12", "13"]}],
    },
    # ---------------------------------------------------------------------------------------------
    "critique_localise_inpaint": {
        "title": "6. Find the flaws and inpaint them",
        # Groups in the order the image flows, each wired mostly to its neighbours; Find the flaws sits above
        # Inpaint (its masks go straight down). Two card nodes with their card room, the Find nodes and the
        # inpainting chain at their minimum sizes need more than MAX_BOX: this is the closest layout.
        "nodes": {"1": [40, 410, 210, 100], "2": [40, 570, 210, 160], "3": [40, 790, 210, 90],
                  "4": [40, 930, 210, 90], "5": [270, 410, 210, 110], "6": [270, 580, 210, 270],
                  "7": [270, 900, 210, 50],
                  "8": [530, 120, 300, 300], "9": [530, 710, 300, 310],
                  "10": [880, 120, 360, 296], "11": [880, 466, 360, 130], "12": [1260, 120, 360, 360],
                  "21": [1260, 540, 360, 306], "24": [1640, 120, 280, 100], "25": [1640, 270, 280, 150],
                  "13": [880, 966, 320, 200], "14": [880, 1216, 320, 90], "15": [1220, 966, 220, 50],
                  "16": [1220, 1066, 220, 50], "17": [1460, 966, 220, 270], "18": [1460, 1286, 220, 50],
                  "19": [1700, 966, 220, 150],
                  "22": [1970, 310, 300, 200], "20": [1970, 570, 300, 310]},
        "notes": [
            {"id": 30, "title": "Start here", "box": [40, 120, 440, 190], "text": (
                "## Critique → find the flaws → inpaint → critique again\n"
                "The critic names what is wrong (\"the left hand has six fingers\"), GroundingDINO finds it, SAM "
                "masks it, and the sampler repaints only the mask with the critic's refined prompt. The second "
                "critique shows whether the fix worked.")},
            {"id": 31, "box": [270, 1010, 210, 130], "text": (
                "### Generator\nAny model works; for the repaint (group 4) use the same model family as the "
                "image, or an inpainting checkpoint.")},
            {"id": 32, "box": [530, 480, 300, 170], "text": CRITIC_NOTE_TINY},
            {"id": 34, "box": [1640, 480, 280, 366], "text": (
                "### Find the flaws\nDimensions of the first critique below *fix scores below* count as defects: "
                "**Defect Phrases** asks the critic which regions to fix, **Localise Defects** finds them with "
                "GroundingDINO (models/grounding-dino) and SAM (models/sams), e.g. `hf download "
                "IDEA-Research/grounding-dino-tiny --local-dir ComfyUI/models/grounding-dino/grounding-dino-tiny`. "
                "The previews show the boxes and masks; nothing found gives an empty mask and the report says so.")},
            {"id": 35, "box": [1220, 1166, 220, 170], "text": (
                "### Inpaint\nThe refined prompt is encoded, the latent gets the mask, the sampler repaints only "
                "there (*denoise* 0.75), and the repaint is pasted back: nothing outside the mask changes.")},
            {"id": 36, "box": [1970, 120, 300, 130], "text": (
                "### Critique the fix\nThe same critic judges the repaired image against the original prompt: "
                "compare its card with the first one. Save Image keeps the repaired image.")},
        ],
        "groups": [{"title": "1 · Generate", "color": BLUE, "members": ["1", "2", "3", "4", "5", "6", "7", 31]},
                   {"title": "2 · Critique", "color": GREEN, "members": ["8", 32, "9"]},
                   {"title": "3 · Find the flaws", "color": YELLOW, "members": ["10", "11", "12", "21", "24", "25",
                                                                             34]},
                   {"title": "4 · Inpaint the flaws", "color": BLUE, "members": ["13", "14", "15", "16", "17",
                                                                                "18", "19", 35]},
                   {"title": "5 · Critique again and save", "color": PURPLE, "members": [36, "20", "22"]}],
    },
    # ---------------------------------------------------------------------------------------------
    "repair_regions_loop": {
        "title": "7. Repair regions until the critic is satisfied",
        # Cards sit low in their columns with nothing below them; their card room runs below what Fit view
        # frames (the nodes), so all six groups fit the budget side by side. The prompt is shared: it feeds the
        # generation and both critiques.
        "nodes": {"1": [40, 352, 210, 100], "2": [40, 496, 210, 160], "3": [270, 352, 210, 90],
                  "4": [270, 486, 210, 90],
                  "5": [40, 820, 210, 110], "6": [270, 820, 210, 270], "7": [270, 1134, 210, 50],
                  "8": [520, 120, 286, 300], "9": [520, 710, 286, 310],
                  "10": [846, 120, 360, 130], "11": [846, 294, 360, 460],
                  "12": [1246, 120, 210, 50], "13": [1246, 210, 210, 50], "14": [1246, 300, 210, 270],
                  "15": [1476, 120, 232, 50], "16": [1476, 210, 232, 150],
                  "17": [1246, 832, 260, 310],
                  "19": [1748, 354, 350, 200], "20": [1748, 598, 350, 200], "18": [1748, 842, 350, 300]},
        "notes": [
            {"id": 30, "title": "Start here", "box": [40, 60, 440, 200], "text": (
                "## Repair the flaws, round after round\n"
                "The critic judges the image (round 0); Repair Loop Start asks it which regions are wrong (\"the "
                "left hand\"), GroundingDINO + SAM mask them, **your inpainting** repaints the mask, and the critic "
                "judges the repair. Each round repairs the best image so far until the critique is good enough, "
                "nothing is left to repair, a repair is no better, or *max repair rounds*. The best image comes "
                "out: it may be the image as given.")},
            {"id": 31, "box": [270, 620, 210, 88], "text": (
                "### Shared\nLoaded once: they serve the generation and every repair.")},
            {"id": 32, "box": [40, 974, 210, 200], "text": (
                "### Generate (or load)\nMakes the image to repair. To repair a picture you already have, put "
                "Load Image here and wire it to Critique and to Repair Loop Start's *image*.")},
            {"id": 33, "box": [520, 464, 286, 170], "text": CRITIC_NOTE_TINY},
            {"id": 35, "box": [846, 798, 360, 330], "text": (
                "### Repair Loop Start\nEach round takes the best image so far and its critique, asks the critic "
                "which regions to fix (*phrases from*), finds them with GroundingDINO + SAM and hands your "
                "inpainting the image, the **mask** and a **seed**. Models: `hf download "
                "IDEA-Research/grounding-dino-tiny --local-dir ComfyUI/models/grounding-dino/grounding-dino-tiny`, "
                "and a SAM in models/sams.\n\n*max masked area* refuses a mask that covers most of the image (a "
                "regeneration, not a repair). *regions per round* = per_phrase repairs the worst region first, one "
                "per round.")},
            {"id": 36, "title": "Put your inpainting here", "box": [1476, 400, 232, 320], "text": (
                "### ⚠ Your inpainting goes here\nThis group reruns every round. SD1.5 with SetLatentNoiseMask + "
                "KSampler is only an **example**: swap in **InpaintModelConditioning** with an inpainting "
                "checkpoint, a fill model (e.g. FLUX.1 Fill) or an editing model that takes a mask (its loaders go "
                "in Shared).\n\nKeep the wiring: Loop Start's *image*, *mask* and *seed* in; the repair pasted "
                "back with ImageCompositeMasked out.")},
            {"id": 37, "box": [1526, 832, 182, 170], "text": (
                "### Critique the repair\nThe same critic judges each repaired image against the same prompt; its "
                "card shows the latest round.")},
            {"id": 38, "box": [1748, 120, 350, 190], "text": (
                "### Repair Loop End\nKeeps the best image by overall score (an unreadable critique is never "
                "best). Stops when *good enough when these* reach the threshold, no region is left, a repair is no "
                "better, or after *max repair rounds*. Its card shows every round: the mask, the result, the "
                "regions and the scores before and after.")},
        ],
        "groups": [{"title": "Shared (runs once)", "color": GREY, "members": ["1", "2", "3", "4", 31]},
                   {"title": "1 · Generate", "color": BLUE, "members": ["5", "6", "7", 32]},
                   {"title": "2 · Critique (round 0)", "color": GREEN, "members": ["9", "8", 33]},
                   {"title": "3 · Find the regions", "color": YELLOW, "members": ["10", "11", 35]},
                   {"title": "4 · Loop: your inpainting", "color": BLUE,
                    "members": ["12", "13", "14", "15", "16", 36]},
                   {"title": "5 · Critique the repair", "color": PURPLE, "members": ["17", 37]},
                   {"title": "6 · Decide and keep the best", "color": ORANGE, "members": ["18", 38, "19", "20"]}],
    },
}
