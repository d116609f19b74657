"""The critique card in the real ComfyUI frontend (headless Chromium): graphs are loaded through the
UI, queued from the page, and the card's DOM must show exactly what the server returned in /history.

The tiny random critic is steered with RR_ReplayAnswers, so the answers go through the real decoding
path and the real parser; the card only displays the node's `ui` payload.
"""
from __future__ import annotations

import json

import pytest

from tests.browser.conftest import SCREENSHOTS
from tests.comfy_server import Graph, outputs
from tests.twins import shipped_workflow

pytestmark = pytest.mark.integration


def pointwise(tf: str, pq: str, tr: str, refined: str, *, summary: str = "A faithful image.",
              tf_just: str = "The subject is there.", edit_if: str | None = None) -> str:
    """A short critique in the published layout (T2I; Edit when ``edit_if`` gives Image Faithfulness).
    Short on purpose: the tiny critic is forced through every token of it."""
    dims = [("Text Faithfulness", tf_just, tf)]
    if edit_if is not None:
        dims.append(("Image Faithfulness", "Background kept.", edit_if))
    dims += [("Physical and Visual Quality", "One ear is blurred.", pq), ("Text Rendering", "No text.", tr)]
    body = "".join(f"{i}. {t}:\n## Justification: {j}\n## Score: {s}\n" for i, (t, j, s) in enumerate(dims, 1))
    return (f"# Detailed Judgement\n{body}# Summary: {summary}\n# User Request Refinement:\n"
            f"## Refinement Comments: Be specific.\n## Refined Request: {refined}\n")


PAIR = """# User Request Analysis
A red fox in snow.
# Detailed Judgement
1. Text Faithfulness:
## Justification: B misses the snow.
## Score A: 3.5
## Score B: 2
## Winner: Image A
2. Physical and Visual Quality:
## Justification: A has a blurred paw.
## Score A: 2.5
## Score B: 3.75
## Winner: Image B
3. Text Rendering:
## Justification: No text.
## Score A: N/A
## Score B: N/A
## Winner: N/A
# Summary: Image A follows the request better.
"""

XSS_IMG = "<img src=x onerror=window.__pwned=1>"
XSS_SCRIPT = "<script>window.__pwned=1</script>"

# ---------------------------------------------------------------------------------------------
# reading the card
# ---------------------------------------------------------------------------------------------

READ_CRITIQUES = """(card) => [...card.querySelectorAll('.rr-critique')].map(c => ({
    dims: [...c.querySelectorAll('.rr-dim')].map(d => ({key: d.dataset.key, status: d.dataset.status,
        title: d.querySelector('.rr-dim-title').textContent, score: d.querySelector('.rr-dim-score').textContent,
        fill: d.querySelector('.rr-bar-fill').style.width,
        just: (d.querySelector('.rr-just-text') || {}).textContent || null,
        justOpen: (d.querySelector('details.rr-just') || {}).open})),
    overall: c.querySelector('.rr-overall').textContent,
    warnings: [...c.querySelectorAll('.rr-warning')].map(w => w.textContent),
    summary: (c.querySelector('.rr-summary .rr-text') || {}).textContent || null,
    refined: (c.querySelector('.rr-refined') || {}).textContent || null,
    copy: !!c.querySelector('.rr-refined-block button.rr-copy'),
}))"""


def shown_score(d: dict) -> str:
    if d["status"] == "n/a":
        return "N/A"
    return "unreadable" if d["status"] != "ok" else f"{d['score']:.2f}"


def shown_overall(x: float | None) -> str:
    return "unreadable" if x is None else f"{x:.3f}"


def assert_critique_matches(shown: dict, data: dict) -> None:
    """One card section against one Critique.to_dict() from /history."""
    assert [d["key"] for d in shown["dims"]] == [d["key"] for d in data["dimensions"]]
    for s, d in zip(shown["dims"], data["dimensions"]):
        assert s["status"] == d["status"], s
        assert s["title"] == d["title"]
        assert s["score"] == shown_score(d), (s, d)
        assert s["just"] == d["justification"]
        assert s["justOpen"] is False  # collapsed until clicked
        if d["status"] == "ok":
            assert float(s["fill"].rstrip("%")) == pytest.approx((d["score"] - 1) / 3 * 100, abs=1e-3)
        else:
            assert s["fill"] == "0%"
    assert shown["overall"] == shown_overall(data["overall"])
    assert shown["warnings"] == data["warnings"]
    assert shown["summary"] == data["summary"]
    assert shown["refined"] == data["refined_request"]
    assert shown["copy"] is bool(data["refined_request"])


def ui_of(entry: dict, node_id: str, key: str) -> list:
    out = outputs(entry).get(node_id) or {}
    assert key in out, f"node {node_id} sent no ui.{key}: {sorted(out)}"
    return out[key]


# ---------------------------------------------------------------------------------------------
# graphs
# ---------------------------------------------------------------------------------------------

def splice_replay(wf: dict, script: list[dict]) -> int:
    """Insert RR_ReplayAnswers on the RR_CRITIC link of a UI workflow; returns its node id."""
    link = next(lk for lk in wf["links"] if lk[5] == "RR_CRITIC")
    link_id, src, src_slot, dst, dst_slot, _ = link
    rid, new_link = wf["last_node_id"] + 1, wf["last_link_id"] + 1
    wf["last_node_id"], wf["last_link_id"] = rid, new_link
    link[3], link[4] = rid, 0
    wf["links"].append([new_link, rid, 0, dst, dst_slot, "RR_CRITIC"])
    target = next(n for n in wf["nodes"] if n["id"] == dst)
    next(i for i in target["inputs"] if i.get("link") == link_id)["link"] = new_link
    loader = next(n for n in wf["nodes"] if n["id"] == src)
    wf["nodes"].append({
        "id": rid, "type": "RR_ReplayAnswers", "pos": [loader["pos"][0], loader["pos"][1] + 260],
        "size": [340, 160], "flags": {}, "order": 0, "mode": 0,
        "inputs": [{"name": "critic", "type": "RR_CRITIC", "link": link_id}],
        "outputs": [{"name": "critic", "type": "RR_CRITIC", "slot_index": 0, "links": [new_link]}],
        "properties": {"Node name for S&R": "RR_ReplayAnswers"}, "widgets_values": [json.dumps(script)]})
    return dst


def node_of(wf: dict, node_type: str) -> str:
    return str(next(n["id"] for n in wf["nodes"] if n["type"] == node_type))


def replay_critic(g: Graph, models, script: list[dict]):
    loader = g.node("RR_LoadCritic", checkpoint=models.critic)
    return g.node("RR_ReplayAnswers", critic=loader, script=json.dumps(script))


# ---------------------------------------------------------------------------------------------
# theme check
# ---------------------------------------------------------------------------------------------

def _luminance(rgb: str) -> float:
    nums = [float(x) for x in rgb[rgb.index("(") + 1:rgb.index(")")].replace(",", " ").split()[:3]]
    lin = [(c / 255 / 12.92) if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in nums]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(fg: str, bg: str) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


READ_COLOURS = """(host) => { const card = host.querySelector('.rr-card');
    const s = (sel, p) => getComputedStyle(card.querySelector(sel))[p];
    return {bg: getComputedStyle(card).backgroundColor, text: s('.rr-dim-title', 'color'),
            muted: s('.rr-label', 'color'), score: s('.rr-dim-score', 'color'), refined: s('.rr-refined', 'color'),
            warning: s('.rr-warning', 'color')}; }"""


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------

def test_critique_card_shows_the_server_scores_in_both_themes(comfy_page, comfy_server, models_dir):
    """Shipped workflow (critique a generated image) loaded in the UI and queued from the page: bars,
    N/A, the clamped-score warning, overall, summary, justifications, refined prompt + copy."""
    seed = comfy_server.fresh_seed()
    prompt = f"a red fox sitting in fresh snow at sunrise {seed}"
    refined = f"a red fox sitting in fresh snow at sunrise, both ears sharp and in focus {seed}"
    script = [{"answer": pointwise("3.5", "4.8", "N/A", refined), "when_request_contains": "red fox"}]
    wf = shipped_workflow("critique_generated_image.json", models_dir, seed, prompt)
    node = str(splice_replay(wf, script))
    assert node == node_of(wf, "RR_CritiqueImage")
    comfy_page.load_workflow(wf)
    entry = comfy_page.queue_and_wait()
    [data] = ui_of(entry, node, "rr_critiques")
    assert data["overall"] == pytest.approx(((3.5 + 4.0) / 2 - 1) / 3)   # the scenario: 4.8 clamped, N/A left out
    assert [d["status"] for d in data["dimensions"]] == ["ok", "ok", "n/a"]
    assert data["warnings"] and "clamped" in data["warnings"][0]

    card = comfy_page.wait_card(node)
    [shown] = card.evaluate(READ_CRITIQUES)
    assert_critique_matches(shown, data)
    assert card.evaluate("c => c.querySelector('.rr-card').dataset.rrKind") == "critique"

    # justifications open on click; the copy button puts the refined prompt on the clipboard
    assert card.evaluate("c => { const d = c.querySelector('details.rr-just'); d.querySelector('summary').click();"
                         " return d.open; }") is True
    card.evaluate("c => c.querySelector('button.rr-copy').click()")
    comfy_page.page.wait_for_function("(c) => c.querySelector('button.rr-copy').dataset.copied === '1'", arg=card)
    assert comfy_page.page.evaluate("() => navigator.clipboard.readText()") == refined

    # readable in the dark (default) and the light palette: the card follows the theme's variables
    dark = card.evaluate(READ_COLOURS)
    comfy_page.screenshot("critique-card-dark", node)

    comfy_page.set_setting("Comfy.ColorPalette", "light")
    try:
        light = card.evaluate(READ_COLOURS)
        comfy_page.screenshot("critique-card-light", node)
    finally:
        comfy_page.set_setting("Comfy.ColorPalette", "dark")
    assert _luminance(dark["bg"]) < 0.1 < 0.8 < _luminance(light["bg"]), (dark, light)
    for colours in (dark, light):
        for role in ("text", "muted", "score", "refined", "warning"):
            assert contrast(colours[role], colours["bg"]) >= 4.5, (role, colours)
    assert not comfy_page.errors


def test_the_readme_shot_is_a_clean_critique_card(comfy_page, comfy_server, models_dir):
    """The README's top image (docs/critique-card.png is a copy of critique-card-readme.png): the shipped
    "Generate and critique" workflow with a plain prompt (the run is kept out of the cache by the sampler's seed alone), a
    well-formed scripted answer (no warning), the card as first shown: nothing clicked, nothing copied."""
    prompt = "a red fox sitting in fresh snow at sunrise"
    refined = "a red fox sitting in fresh snow at sunrise, both ears sharp and in focus, soft golden light"
    answer = pointwise("3.5", "3", "N/A", refined, summary="The fox and the snow are there; one ear is soft.",
                       tf_just="A red fox sits in fresh snow under a low sun.")
    wf = shipped_workflow("critique_generated_image.json", models_dir, comfy_server.fresh_seed(), prompt)
    node = str(splice_replay(wf, [{"answer": answer, "when_request_contains": "red fox"}]))
    comfy_page.load_workflow(wf)
    [data] = ui_of(comfy_page.queue_and_wait(), node, "rr_critiques")
    assert data["warnings"] == [] and data["overall"] == pytest.approx(((3.5 + 3) / 2 - 1) / 3)

    card = comfy_page.wait_card(node)
    [shown] = card.evaluate(READ_CRITIQUES)
    assert_critique_matches(shown, data)
    assert shown["warnings"] == [] and prompt in shown["refined"]
    assert card.evaluate("c => [...c.querySelectorAll('details')].every(d => !d.open)"
                         " && [...c.querySelectorAll('button.rr-copy')].every(b => b.dataset.copied !== '1')")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    comfy_page.focus_node(node)
    card.as_element().screenshot(path=str(SCREENSHOTS / "critique-card-readme.png"))
    assert not comfy_page.errors


def test_critique_text_is_rendered_as_text_never_as_html(comfy_page, comfy_server, models_dir):
    """Critique Edit whose justification, summary and refined prompt carry HTML/script: shown
    literally, nothing executes; an unreadable score shows as such with its warning, overall unreadable."""
    seed = comfy_server.fresh_seed()
    instruction = f"make the sky purple {seed}"
    answer = pointwise("3", "excellent", "N/A", f"<b>make</b> the sky purple {XSS_IMG}", edit_if="2.5",
                       summary=f"Looks fine. {XSS_SCRIPT} <b>bold</b>", tf_just=f"The sky is purple {XSS_IMG}")
    g = Graph()
    critic = replay_critic(g, models_dir, [{"answer": answer, "when_request_contains": "sky purple"}])
    src = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    edited = g.node("EmptyImage", width=64, height=64, batch_size=1, color=(seed * 7) % 0xFFFFFF)
    crit = g.node("RR_CritiqueEdit", critic=critic, source=src, edited=edited, instruction=instruction)
    comfy_page.page.evaluate("() => { delete window.__pwned; }")
    comfy_page.load_api(g.prompt())
    entry = comfy_page.queue_and_wait()
    [data] = ui_of(entry, crit.id, "rr_critiques")
    assert [d["status"] for d in data["dimensions"]] == ["ok", "ok", "missing", "n/a"]
    assert data["overall"] is None and data["warnings"]
    assert XSS_SCRIPT in data["summary"] and XSS_IMG in data["dimensions"][0]["justification"]

    card = comfy_page.wait_card(crit.id)
    [shown] = card.evaluate(READ_CRITIQUES)
    assert_critique_matches(shown, data)
    assert shown["dims"][2]["score"] == "unreadable" and shown["overall"] == "unreadable"
    card.evaluate("c => c.querySelectorAll('details').forEach(d => d.open = true)")
    assert card.evaluate("c => c.querySelectorAll('img:not(.rr-judged), script, b').length") == 0   # only the pack's own thumbnail
    # every image in the page has settled (an injected one's onerror would have fired by then)
    comfy_page.page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=15000)
    comfy_page.next_frames()
    text = card.evaluate("c => c.textContent")
    assert XSS_IMG in text and XSS_SCRIPT in text and "<b>bold</b>" in text
    assert comfy_page.page.evaluate("() => window.__pwned") is None
    comfy_page.screenshot("critique-card-escaped", crit.id)
    assert not comfy_page.errors


def test_an_unreadable_critique_shows_what_the_critic_wrote_and_one_line_of_advice(comfy_page, comfy_server,
                                                                                   models_dir):
    """Issue 22: a critique the parser cannot read is not a dead end: the card keeps the raw answer
    (collapsed) and says what to try."""
    seed = comfy_server.fresh_seed()
    rambling = f"What a lovely picture of a fox {seed}! I would hang it on my wall."
    g = Graph()
    critic = replay_critic(g, models_dir, [{"answer": rambling, "when_request_contains": "lovely fox"}])
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=f"a lovely fox {seed}")
    comfy_page.load_api(g.prompt())
    entry = comfy_page.queue_and_wait()
    [data] = ui_of(entry, crit.id, "rr_critiques")
    assert all(d["status"] == "missing" for d in data["dimensions"]) and data["raw"] == rambling
    assert data["advice"].startswith("The critic did not answer in the critique layout")

    card = comfy_page.wait_card(crit.id, ".rr-raw")
    thumb = card.evaluate("c => c.querySelector('img.rr-judged').dataset.filename")   # the judged image, shown
    assert thumb == outputs(entry)[crit.id]["rr_images"][0]["filename"]
    shown = card.evaluate("""c => ({advice: c.querySelector('.rr-advice').textContent,
        open: c.querySelector('details.rr-raw').open, summary: c.querySelector('.rr-raw > summary').textContent,
        raw: c.querySelector('.rr-raw-text').textContent})""")
    assert shown == {"advice": data["advice"], "open": False, "summary": "What the critic wrote", "raw": rambling}
    card.evaluate("c => c.querySelector('details.rr-raw').open = true")
    comfy_page.screenshot("critique-card-unreadable", crit.id)
    assert not comfy_page.errors


def test_replay_with_a_pasted_critique_gives_the_parsed_card(comfy_page, comfy_server, models_dir):
    """Replay Critique Answers takes the critique text itself (no JSON): it answers every prompt."""
    seed = comfy_server.fresh_seed()
    answer = pointwise("3.5", "2.75", "N/A", f"a red fox in deep snow {seed}")
    g = Graph()
    loader = g.node("RR_LoadCritic", checkpoint=models_dir.critic)
    critic = g.node("RR_ReplayAnswers", critic=loader, script=answer)
    img = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    crit = g.node("RR_CritiqueImage", critic=critic, image=img, prompt=f"any prompt at all {seed}")
    comfy_page.load_api(g.prompt())
    entry = comfy_page.queue_and_wait()
    [data] = ui_of(entry, crit.id, "rr_critiques")
    assert [d["score"] for d in data["dimensions"]] == [3.5, 2.75, None] and data["raw"] is None
    card = comfy_page.wait_card(crit.id)
    [shown] = card.evaluate(READ_CRITIQUES)
    assert_critique_matches(shown, data)
    assert card.evaluate("c => c.querySelector('.rr-raw, .rr-advice')") is None
    assert not comfy_page.errors


def test_compare_card_shows_the_winner_per_dimension(comfy_page, comfy_server, models_dir):
    seed = comfy_server.fresh_seed()
    g = Graph()
    critic = replay_critic(g, models_dir, [{"answer": PAIR, "when_request_contains": "fox", "mode": "pairwise"}])
    a = g.node("EmptyImage", width=64, height=64, batch_size=1, color=seed % 0xFFFFFF)
    b = g.node("EmptyImage", width=64, height=64, batch_size=1, color=(seed * 3) % 0xFFFFFF)
    cmp = g.node("RR_Compare", critic=critic, image_a=a, image_b=b, prompt=f"a red fox in snow {seed}")
    comfy_page.load_api(g.prompt())
    entry = comfy_page.queue_and_wait()
    [data] = ui_of(entry, cmp.id, "rr_compare")
    assert [d["winner"] for d in data["dimensions"]] == ["A", "B", "N/A"]   # Winner: N/A is no winner

    card = comfy_page.wait_card(cmp.id)
    shown = card.evaluate("""c => ({winner: c.querySelector('.rr-compare-winner').textContent,
        a: c.querySelector('.rr-total-a').textContent, b: c.querySelector('.rr-total-b').textContent,
        dims: [...c.querySelectorAll('.rr-pair-dim')].map(d => ({key: d.dataset.key, winner: d.dataset.winner,
            label: d.querySelector('.rr-winner').textContent, a: d.querySelector('.rr-score-a').textContent,
            b: d.querySelector('.rr-score-b').textContent,
            won: [...d.querySelectorAll('.rr-side-won .rr-side-label')].map(x => x.textContent)})),
        summary: c.querySelector('.rr-summary .rr-text').textContent})""")
    label = {"A": "Image A", "B": "Image B", "tie": "tie", "undecided": "undecided", "N/A": "N/A"}
    assert shown["winner"] == label[data["winner"]]
    assert card.evaluate("c => c.querySelector('.rr-decision-rule').textContent") == data["decision"]["rule"] \
        == "published"
    assert shown["a"] == f"{data['total_a']:.2f}" and shown["b"] == f"{data['total_b']:.2f}"
    assert shown["summary"] == data["summary"]
    for s, d in zip(shown["dims"], data["dimensions"], strict=True):
        assert (s["key"], s["winner"], s["label"]) == (d["key"], d["winner"], label[d["winner"]])
        assert s["a"] == shown_score(d["a"]) and s["b"] == shown_score(d["b"])
        assert s["won"] == ([d["winner"]] if d["winner"] in ("A", "B") else [])
    # thumbnails: the previews the server saved, A then B, loaded from /view; the winner is marked
    refs = [ref["filename"] for ref in ui_of(entry, cmp.id, "images")]
    thumbs = card.evaluate("""c => [...c.querySelectorAll('.rr-compare-thumbs figure')].map(f => ({
        side: f.dataset.side, won: f.classList.contains('rr-side-won'), file: f.querySelector('img').dataset.filename}))""")
    assert [t["side"] for t in thumbs] == ["A", "B"] and [t["file"] for t in thumbs] == refs
    assert [t["won"] for t in thumbs] == [data["winner"] == "A", data["winner"] == "B"]
    comfy_page.page.wait_for_function(
        "c => [...c.querySelectorAll('.rr-compare-thumbs img')].every(i => i.complete && i.naturalWidth === 64)",
        arg=card, timeout=15_000)
    comfy_page.screenshot("compare-card", cmp.id)
    assert not comfy_page.errors


def test_rank_card_shows_thumbnails_in_score_order(comfy_page, comfy_server, models_dir):
    """Shipped rank workflow (batch of 2); the thumbnails follow the node's sorted ui.images. A second,
    hand-made payload with a shuffled order shows the card keeps the order it is given."""
    seed = comfy_server.fresh_seed()
    prompt = f"a red fox sitting in fresh snow {seed}"
    script = [{"answer": pointwise("3.25", "2.5", "N/A", f"a sharper red fox {seed}"), "when_request_contains": "fox"}]
    wf = shipped_workflow("rank_batch.json", models_dir, seed, prompt, batch=2)
    node = str(splice_replay(wf, script))
    assert node == node_of(wf, "RR_Rank")
    comfy_page.load_workflow(wf)
    entry = comfy_page.queue_and_wait()
    out = outputs(entry)[node]
    [data] = out["rr_rank"]
    assert len(out["images"]) == len(data["rows"]) == 2

    card = comfy_page.wait_card(node, ".rr-thumb img")
    read = """c => [...c.querySelectorAll('.rr-thumb')].map(t => ({rank: t.dataset.rank, index: t.dataset.index,
        file: t.querySelector('img') && t.querySelector('img').dataset.filename,
        overall: t.querySelector('.rr-thumb-overall').textContent}))"""
    shown = card.evaluate(read)
    assert [t["file"] for t in shown] == [im["filename"] for im in out["images"]]
    assert [(int(t["rank"]), int(t["index"]), t["overall"]) for t in shown] == \
        [(r["rank"], r["index"], shown_overall(r["overall"])) for r in data["rows"]]
    comfy_page.page.wait_for_function(   # the thumbnails really load from /view
        "c => [...c.querySelectorAll('.rr-thumb img')].every(i => i.complete && i.naturalWidth === 64)",
        arg=card, timeout=15_000)
    details = card.evaluate(READ_CRITIQUES)
    for shown_crit, crit in zip(details, data["critiques"], strict=True):
        assert_critique_matches(shown_crit, crit)
    comfy_page.screenshot("rank-card", node)

    # distinct scores in a shuffled order: the card shows them exactly in the order given
    rows = [dict(data["rows"][i], rank=pos + 1, index=idx, overall=ov)
            for pos, (i, idx, ov) in enumerate([(0, 1, 0.9), (1, 0, None)])]
    payload = {"images": out["images"][::-1], "rr_rank": [dict(data, rows=rows)]}
    comfy_page.page.evaluate("([id, p]) => window.app.graph.getNodeById(Number(id)).onExecuted(p)", [node, payload])
    shown = comfy_page.wait_card(node).evaluate(read)
    assert [(t["rank"], t["index"], t["overall"], t["file"]) for t in shown] == \
        [(str(r["rank"]), str(r["index"]), shown_overall(r["overall"]), im["filename"])
         for r, im in zip(rows, payload["images"])]
    assert not comfy_page.errors


def test_loop_card_shows_the_round_history(comfy_page, comfy_server, models_dir):
    """Shipped refine loop (tiny SD1.5 inside): round 0 fails the stop rule, round 1 (the critic's
    refined prompt) passes it; the card shows both rounds, the prompt diff, scores and the best."""
    seed = comfy_server.fresh_seed()
    p0, p1 = f"a red cat in a garden {seed}", f"a red cat with five toes in a sunny garden {seed}"
    script = [{"answer": pointwise("2", "2.5", "N/A", p1), "when_request_contains": "red cat"},
              {"answer": pointwise("3.5", "3.75", "N/A", p1 + " again"), "when_request_contains": "five toes"}]
    wf = shipped_workflow("t2i_refine_loop.json", models_dir, seed, p0)
    start = next(n for n in wf["nodes"] if n["type"] == "RR_RefineLoopStart")
    start["widgets_values"][:3] = [p0, seed, "fixed"]
    splice_replay(wf, script)
    end = node_of(wf, "RR_RefineLoopEnd")
    comfy_page.load_workflow(wf)
    entry = comfy_page.queue_and_wait()
    histories = [h for out in outputs(entry).values() for h in out.get("rr_loop", [])]
    final = max(histories, key=lambda h: len(h["rounds"]))
    assert [r["prompt"] for r in final["rounds"]] == [p0, p1] and final["best"] == 1 and final["stop_reason"]

    card = comfy_page.wait_card(end, '.rr-loop[data-final="1"]')
    shown = card.evaluate("""c => ({best: c.querySelector('.rr-loop-best').textContent,
        stop: c.querySelector('.rr-stop .rr-text').textContent,
        rounds: [...c.querySelectorAll('.rr-round')].map(r => ({index: r.dataset.round,
            best: r.classList.contains('rr-round-best'), good: !!r.querySelector('.rr-badge-good'),
            seed: r.querySelector('.rr-round-seed').textContent, overall: r.querySelector('.rr-round-overall').textContent,
            chips: [...r.querySelectorAll('.rr-chip')].map(x => [x.dataset.key, x.querySelector('.rr-chip-title').textContent,
                                                               x.querySelector('.rr-chip-score').textContent]),
            prompt: r.querySelector('.rr-prompt').textContent,
            ins: [...r.querySelectorAll('.rr-prompt ins')].map(x => x.textContent.trim()),
            del: [...r.querySelectorAll('.rr-prompt del')].map(x => x.textContent.trim())})),
        bestPrompt: c.querySelector('.rr-refined').textContent})""")
    assert shown["best"] == f"best: round {final['best']}"
    assert shown["stop"] == final["stop_reason"]
    assert shown["bestPrompt"] == final["rounds"][final["best"]]["prompt"]
    assert final["titles"]["physical_quality"] == "Physical and Visual Quality"
    for s, r, statuses in zip(shown["rounds"], final["rounds"], final["statuses"], strict=True):
        assert int(s["index"]) == r["index"] and s["prompt"] == r["prompt"]
        assert (s["best"], s["good"]) == (r["index"] == final["best"], r["good"])
        assert s["seed"] == f"seed {r['seed']}" and s["overall"] == shown_overall(r["overall"])
        assert s["chips"] == [[k, final["titles"][k], shown_score({"score": v, "status": statuses[k]})]
                              for k, v in r["scores"].items()]
    assert shown["rounds"][0]["ins"] == [] and shown["rounds"][0]["del"] == []
    assert "with five toes" in " ".join(shown["rounds"][1]["ins"]) and "sunny" in " ".join(shown["rounds"][1]["ins"])
    assert final["rounds"][1]["overall"] is not None
    comfy_page.screenshot("loop-card", end)
    assert not comfy_page.errors
