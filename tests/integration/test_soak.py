"""Issue #23, load: one ComfyUI process runs round after round of what an artist does in a session
(critiques, a refine loop, a switch to another critic, then ComfyUI's "Free model and node cache") and
the pack's memory comes back every time.

Read through the test-only probe (tests/fixtures/soak_probe: ``GET /rr_test/probe``) after each round's
``/free``, with a full garbage collection first:

* no critic is left alive once ComfyUI has asked for its memory (host copies included: the critic's
  tensors are gone from the process, not only from ComfyUI's list of loaded models);
* nothing accumulates from round to round: the pack's live objects, torch tensors and their bytes, module
  and global hooks, open files, threads, and the size of each round's history entries;
* resident memory after the warm-up round stays within ``RSS_BOUND``.

The figures are printed (``-s`` shows them; the README's reliability section records a run).
"""
from __future__ import annotations

import json
import os
import platform
import time

import pytest

from tests.comfy_server import (
    ARTIFACTS_DIR,
    WIDE_CRITIC_NAME,
    comfyui_version,
    dist_version,
)
from tests.integration.test_refine_loop import REFINED, ROUND0, t2i_loop
from tests.integration.test_residency import critique_graph
from tests.twins import pointwise_answer

pytestmark = pytest.mark.integration

WARM_UP = 2                    # rounds before the measured ones: first loads, first-time caches, allocator arenas
ROUNDS = int(os.environ.get("RR_SOAK_ROUNDS", "3"))   # measured rounds; more for a long soak
MiB = 1 << 20
RSS_BOUND = 48 * MiB           # growth of the server's resident memory from the warm-up round to the last
TENSOR_SLACK = 1 * MiB         # torch's own small caches (e.g. a dtype constant) may appear once
CRITIC_CLASSES = ("critic.Critic", "transformers_backend.TransformersBackend", "residency.CriticPatcher",
                  "residency.RationalRewardsCritic", "residency.CriticHandle", "residency.HostCopies")


def probe(client) -> dict:
    r = client.get("/rr_test/probe")
    r.raise_for_status()
    return r.json()


def critique(client, models_dir, checkpoint: str) -> dict:
    # greedy: the fresh seed only makes the graph new to ComfyUI's cache, so every round runs it and answers
    # the same text
    g, _ = critique_graph(models_dir, client.fresh_seed(), keep_loaded=True, max_new_tokens=16, checkpoint=checkpoint)
    return client.run(g, timeout=180)


def loop(client, models_dir) -> dict:
    script = [{"answer": pointwise_answer(2, 2.5, "[2]", refined=REFINED), "when_request_contains": ROUND0},
              {"answer": pointwise_answer(3.5, 3, "N/A", refined="unused"), "when_request_contains": "golden light"}]
    return client.run(t2i_loop(client, models_dir, script), timeout=300)


def free_everything(client, timeout: float = 60) -> dict:
    """POST /free (unload models, drop the node cache) until ComfyUI holds no model; the probe after it.
    0.3.75's worker can miss the wake-up of a /free that lands during its post-prompt gc, so it is posted
    again every 2 s until acted on."""
    deadline = time.monotonic() + timeout
    while True:
        client.free(unload_models=True, free_memory=True)
        state = probe(client)
        if not state["loaded_models"]:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"ComfyUI still holds {state['loaded_models']} {timeout}s after /free")
        time.sleep(2)


def own_tensors(state: dict) -> int:
    """Live tensors less those held by the libraries' bounded caches (see the probe's ``library_caches``)."""
    return state["tensors"] - sum(c["entries"] * c["tensors_per_entry"] for c in state["library_caches"].values())


def critic_objects(state: dict) -> dict:
    return {k: v for k, v in state["pack_objects"].items() if k.endswith(CRITIC_CLASSES)}


def entry_bytes(entry: dict) -> int:
    return len(json.dumps(entry.get("outputs", {}), sort_keys=True))


def one_round(client, models_dir) -> tuple[dict, dict]:
    started = time.monotonic()
    sizes = {}
    for i in range(2):
        sizes[f"critique {i}"] = entry_bytes(critique(client, models_dir, models_dir.critic))
    sizes["loop"] = entry_bytes(loop(client, models_dir))
    sizes["switch"] = entry_bytes(critique(client, models_dir, WIDE_CRITIC_NAME))
    kept = probe(client)     # keep_loaded: the critic is alive now, and the probe must see it
    assert critic_objects(kept) and "CriticPatcher" in kept["loaded_models"], (
        f"the probe does not see the kept critic: {kept['pack_objects']}, {kept['loaded_models']}")
    state = free_everything(client)
    state["seconds"] = round(time.monotonic() - started, 1)
    return state, sizes


def record(before: dict, warm: dict, rounds: list[dict], growth: int) -> None:
    """The figures, with the host and versions, in test-artifacts/soak.json (bench/results keeps a copy)."""
    keep = ("rss", "tensors", "tensor_bytes", "modules", "module_hooks", "global_hooks", "open_files", "threads",
            "library_caches", "seconds")
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    (ARTIFACTS_DIR / "soak.json").write_text(json.dumps({
        "what": f"{WARM_UP} warm-up + {len(rounds)} rounds of 2 critiques, a 2-round refine loop, a critic switch "
                "and /free in one ComfyUI process (tiny models, CPU); figures after each round's /free",
        "date": time.strftime("%Y-%m-%d"), "host": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "versions": {"python": platform.python_version(), "torch": dist_version("torch"),
                     "transformers": dist_version("transformers"), "comfyui": comfyui_version()},
        "rss_bound_mib": RSS_BOUND / MiB, "rss_growth_mib": round(growth / MiB, 1),
        "before": {k: before[k] for k in keep if k in before},
        "after_warm_up": {k: warm[k] for k in keep if k in warm},
        "rounds": [{k: r[k] for k in keep if k in r} for r in rounds]}, indent=1) + "\n")


def test_memory_comes_back_round_after_round(comfy_server, models_dir):
    client = comfy_server
    before = free_everything(client)
    for _ in range(WARM_UP):
        warm, warm_sizes = one_round(client, models_dir)
    rounds = [one_round(client, models_dir) for _ in range(ROUNDS)]

    print(f"\nsoak: {ROUNDS} rounds of 2 critiques + a 2-round refine loop + a critic switch + /free")
    print(f"  before: rss {before['rss'] / MiB:.1f} MiB, tensors {before['tensors']}; then {WARM_UP} warm-up rounds")
    for label, (state, _) in [("warm-up", (warm, warm_sizes))] + [(f"round {i + 1}", r) for i, r in enumerate(rounds)]:
        cached = sum(c["entries"] for c in state["library_caches"].values())
        print(f"  {label:8s} rss {state['rss'] / MiB:7.1f} MiB  tensors {own_tensors(state):4d} (+{cached}x2 in "
              f"transformers' bounded cache) "
              f"({state['tensor_bytes'] / MiB:.1f} MiB)  modules {state['modules']:4d}  hooks "
              f"{state['module_hooks']}+{state['global_hooks']}  files {state['open_files']}  threads "
              f"{state['threads']}  pack objects {sum(state['pack_objects'].values())}  {state['seconds']} s")
    if os.environ.get("RR_SOAK_DEBUG"):
        for label, state in [("before", before), ("warm", warm), ("last", rounds[-1][0])]:
            print(label, json.dumps(state["tensor_kinds"]))
    last = rounds[-1][0]
    growth = last["rss"] - warm["rss"]
    print(f"  rss growth after warm-up: {growth / MiB:+.1f} MiB over {ROUNDS} rounds (bound {RSS_BOUND / MiB:.0f} MiB)")
    record(before, warm, [r for r, _ in rounds], growth)

    for i, (state, sizes) in enumerate(rounds, 1):
        held = critic_objects(state)
        assert not held, f"round {i}: critic objects alive after /free: {held}"
        assert state["pack_objects"] == warm["pack_objects"], (
            f"round {i}: the pack's live objects changed after /free: {warm['pack_objects']} -> {state['pack_objects']}")
        assert state["tensor_bytes"] <= warm["tensor_bytes"] + TENSOR_SLACK, (
            f"round {i}: tensors held after /free grew {warm['tensor_bytes']} -> {state['tensor_bytes']} bytes")
        assert own_tensors(state) <= own_tensors(warm), (
            f"round {i}: live tensors (outside library caches) {own_tensors(warm)} -> {own_tensors(state)}")
        for name, cache in state["library_caches"].items():
            assert cache["entries"] <= cache["max"], f"{name}: {cache}"
        for key in ("modules", "module_hooks", "global_hooks"):
            assert state[key] <= warm[key], f"round {i}: {key} {warm[key]} -> {state[key]}"
        for key in ("open_files", "threads"):
            assert state[key] <= warm[key] + 2, f"round {i}: {key} {warm[key]} -> {state[key]}"
        assert sizes == warm_sizes, f"round {i}: history entries changed size: {warm_sizes} -> {sizes}"
    # The critic's own weights are gone after /free, not only unloaded: the tensors held then are the
    # ones held before any critic was loaded (plus torch's small one-time caches).
    assert last["tensor_bytes"] <= before["tensor_bytes"] + TENSOR_SLACK, (
        f"tensors after /free: {last['tensor_bytes']} bytes, before any critic: {before['tensor_bytes']}")
    assert growth <= RSS_BOUND, f"resident memory grew {growth / MiB:.1f} MiB after warm-up (bound {RSS_BOUND / MiB:.0f})"
