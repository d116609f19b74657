"""In-process backend: a Qwen-VL (or any chat VLM) checkpoint run with transformers.

Sampling is done by a logits processor with one seeded ``torch.Generator`` per
request, so a seed reproduces a critique and the global RNG is never touched.

Decoding modes (``TransformersBackend.decoding``): ``plain`` is transformers' default
``generate`` (dynamic KV cache, eager forward); ``static`` preallocates the KV cache;
``compiled`` adds ``torch.compile`` (CUDA graphs) of the decoding step on top, which removes
most per-token Python/launch overhead on a GPU. ``auto`` picks ``compiled`` on CUDA when Triton
is installed and ``plain`` everywhere else, so CPU behaviour never changes. Greedy results are
the same in every mode (tests check it on CPU). If compiling fails, the backend falls back to
``plain`` for the rest of the session and says so in the log.
"""
from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path
from typing import Sequence

import torch

from ..runtime.compat import require_transformers

require_transformers()   # one clear message for an unsupported version, before transformers is imported

from transformers import (AutoModelForImageTextToText, AutoProcessor, CompileConfig,  # noqa: E402
                          GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria,
                          StoppingCriteriaList)

from ..runtime.compat import DependencyError  # noqa: E402
from ..critic.images import as_pil  # noqa: E402
from ..critic.prompting import ChatRequest  # noqa: E402
from ..runtime.quantization import found_quantization, quantization_config, require_method  # noqa: E402
from .sampling import sample  # noqa: E402
from .base import Backend, GenerationInterrupted, GenerationOptions, ProgressFn, StopFn, StreamFn  # noqa: E402,F401
from .qwen_inputs import DEVICE_IMAGE_PROCESSORS, QwenInputs, chat_messages  # noqa: E402,F401
from .options import (ATTENTION, DECODING, DTYPES, available_attention, pick_device, pick_dtype,  # noqa: E402,F401
                      resolve_decoding)

log = logging.getLogger("RationalRewards")


def _no_model_defaults() -> dict:
    """transformers 4.50-4.57 fill generation settings left at their global default (do_sample=False,
    repetition_penalty=1.0, ...) from the checkpoint's generation_config.json unless told not to; 5.x has
    no such merge (and no such argument)."""
    from transformers import GenerationMixin
    return ({"use_model_defaults": False}
            if "use_model_defaults" in inspect.signature(GenerationMixin.generate).parameters else {})


NO_MODEL_DEFAULTS = _no_model_defaults()


def merge_adapter(model, adapter: str | Path):
    """Apply a local PEFT adapter (safetensors only) to ``model`` and merge it into the weights."""
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file() or not (adapter / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(f"{adapter} is not a LoRA adapter folder: it needs adapter_config.json and "
                                "adapter_model.safetensors (pickled adapter .bin files are not loaded)")
    try:
        from peft import PeftModel
    except ImportError:
        raise RuntimeError("loading a LoRA adapter needs the peft package: pip install peft") from None
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=False, local_files_only=True).merge_and_unload()


class SeededSampler(LogitsProcessor):
    """Temperature/top-p sampling from per-row generators; returns logits with one finite entry."""

    def __init__(self, temperature: float, top_p: float, seed: int, rows: int, device: torch.device,
                 top_k: int = 0):
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.generators = [torch.Generator(device=device).manual_seed(seed) for _ in range(rows)]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        picks = sample(scores, self.temperature, self.top_p, self.top_k, self.generators)
        out = torch.full_like(scores.float(), -math.inf)
        return out.scatter_(-1, picks, 0.0)


class ForcedAnswers(LogitsProcessor):
    """Make row ``i`` emit ``targets[i]`` then EOS; rows with ``None`` decode freely."""

    def __init__(self, targets: Sequence[list[int] | None], prompt_len: int, eos_id: int):
        self.targets, self.prompt_len, self.eos_id = list(targets), prompt_len, eos_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        for row, target in enumerate(self.targets):
            if target is None:
                continue
            token = target[step] if step < len(target) else self.eos_id
            scores[row] = -math.inf
            scores[row, token] = 0.0
        return scores


STREAM_EVERY = 8   # tokens between two looks at the text written so far (decoding it costs a little)


class _Watch(StoppingCriteria):
    """Reports progress each step (and the text so far every few steps) and stops every row when the
    user interrupts."""

    def __init__(self, prompt_len: int, budget: int, progress: ProgressFn | None, should_stop: StopFn | None,
                 stream=None, decode=None, start: int = 0):
        self.prompt_len, self.budget = prompt_len, budget
        self.progress, self.should_stop = progress, should_stop
        self.stream, self.decode, self.start = stream, decode, start
        self.stopped = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = input_ids.shape[1] - self.prompt_len
        if self.progress is not None:
            self.progress(done, self.budget)
        if self.stream is not None and done % STREAM_EVERY == 1:
            self.stream(self.start, self.decode(input_ids[:, self.prompt_len:]), False)
        stop = bool(self.should_stop and self.should_stop())
        self.stopped |= stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class TransformersBackend(Backend):
    """Holds a processor and a model; the model's current device decides where generation runs."""

    name = "transformers"

    def __init__(self, model, processor, batch_size: int = 4, source: str = "", decoding: str = "auto"):
        if decoding not in DECODING:
            raise ValueError(f"decoding must be one of {DECODING}; got {decoding!r}")
        self.model, self.processor = model, processor
        self.batch_size = batch_size
        self.source = source
        self.decoding = decoding
        self.compile_config: CompileConfig | None = None   # None: CompileConfig(fullgraph=False)
        self.quantization = "none"   # what load() did or found ("none", "4bit (bitsandbytes ...)", "already quantised: ...")
        tok = self.tokenizer
        tok.padding_side = "left"
        eos = model.generation_config.eos_token_id
        eos = [tok.eos_token_id] if eos is None else eos if isinstance(eos, list) else [eos]
        self.eos_ids = [int(e) for e in eos]     # Qwen3-VL stops at <|im_end|> and <|endoftext|>
        self.eos_id = self.eos_ids[0]            # what a forced answer ends with
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id
        self.inputs = QwenInputs.for_processor(processor)   # None: the processor builds every batch
        self.inputs_checked = False                         # the first batch is built both ways and compared

    @property
    def model_name(self) -> str:
        return Path(self.source).name if self.source else type(self.model).__name__

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @classmethod
    def load(cls, path: str | Path, dtype: str = "auto", device: str = "auto", attention: str = "sdpa",
             batch_size: int = 4, decoding: str = "auto", adapter: str | Path | None = None,
             quantization: str = "none") -> "TransformersBackend":
        """Load from a local folder. Never runs code from the folder; reads safetensors only.

        ``adapter``: a PEFT LoRA folder (e.g. from ``rationalrewards parrot --phases distill``) merged into
        the weights, so the critic runs exactly like a plain checkpoint.
        ``quantization`` (none / int8 / 4bit) quantises with bitsandbytes while loading; a folder that is
        already quantised loads as it is (``backend.quantization`` says what was found)."""
        path = Path(path)
        if not any(path.glob("*.safetensors")):
            raise FileNotFoundError(f"{path} holds no .safetensors weights; the pack only loads safetensors "
                                    "(pickled .bin weights can run arbitrary code)")
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}; got {attention!r}")
        if attention not in available_attention():
            raise RuntimeError(f"attention {attention!r} needs the flash-attn package; install it or choose sdpa")
        dev = pick_device(device)
        torch_dtype = pick_dtype(dtype, dev)
        found = found_quantization(path)
        extra: dict = {}
        if found:
            require_method(path)
            if quantization != "none":
                log.warning("RationalRewards: %s is already quantised (%s); quantization %r is ignored",
                            path.name, found, quantization)
            described = f"already quantised: {found}"
        else:
            qconfig = quantization_config(quantization, torch_dtype)
            if qconfig is not None:
                extra = {"quantization_config": qconfig, "device_map": str(dev)}
            described = "none" if qconfig is None else f"{quantization} (bitsandbytes, quantised while loading)"
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False, local_files_only=True)
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                path, dtype=torch_dtype, attn_implementation=attention, trust_remote_code=False,
                use_safetensors=True, local_files_only=True, **extra)
        except ImportError as e:   # a quantisation backend transformers wants and cannot import
            raise DependencyError(f"loading {path.name} (quantization: {described}) failed: "
                                  f"{str(e).splitlines()[0]}") from None
        if adapter is not None:
            model = merge_adapter(model, adapter)
        model.eval().to(dev)
        backend = cls(model, processor, batch_size=batch_size, source=str(path), decoding=decoding)
        backend.quantization = described
        return backend

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- request building -------------------------------------------------------------------------
    def _messages(self, req: ChatRequest) -> list[dict]:
        return chat_messages(req.system, req.parts)

    def encode(self, requests: Sequence[ChatRequest]) -> dict:
        """Token ids, masks and pixel values of a batch, left-padded: what the checkpoint's processor gives.

        For Qwen-VL processors they are built in torch (:mod:`.qwen_inputs`: cached prompt tokens, IMAGE
        tensors without PIL, one resize). The first batch is also built by the processor and compared; on
        any difference the processor builds every batch from then on (logged)."""
        fast = self.inputs
        if fast is None or not fast.handles(requests):
            return self.processor_encode(requests)
        ours = fast.encode(requests, self.device)
        if self.inputs_checked:
            return ours
        reference = self.processor_encode(requests)
        problem = fast.differences(ours, reference, requests)
        self.inputs_checked = True
        if problem is None:
            return ours
        log.warning("RationalRewards: the torch-built model inputs differ from %s's (%s); the processor builds "
                    "them from now on", type(self.processor).__name__, problem)
        self.inputs = None
        return reference

    def processor_encode(self, requests: Sequence[ChatRequest]) -> dict:
        """The batch through the checkpoint's own processor (PIL images). On CUDA a torchvision-backed
        image processor resizes and normalises on the GPU."""
        texts = [self.processor.apply_chat_template(self._messages(r), add_generation_prompt=True, tokenize=False)
                 for r in requests]
        images = [as_pil(img) for r in requests for img in r.images]
        extra = {}
        if images and self.device.type == "cuda" and isinstance(getattr(self.processor, "image_processor", None),
                                                                 DEVICE_IMAGE_PROCESSORS):
            extra["device"] = str(self.device)
        return self.processor(text=texts, images=images or None, padding=True, return_tensors="pt", **extra)

    # -- generation -------------------------------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], options: GenerationOptions, *,
                 forced: Sequence[str | None] | None = None, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None, stream: StreamFn | None = None) -> list[str]:
        forced = list(forced) if forced is not None else [None] * len(requests)
        if len(forced) != len(requests):
            raise ValueError("forced must have one entry per request")
        answers: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            batch = self._generate_batch(requests[chunk], forced[chunk], options, progress, should_stop,
                                         stream, start)
            if stream is not None:
                stream(start, batch, True)
            answers += batch
        return answers

    @torch.inference_mode()
    def _generate_batch(self, requests, forced, options, progress, should_stop, stream=None, start=0) -> list[str]:
        inputs = self.encode(requests).to(self.device)
        prompt_len = inputs["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if options.temperature > 0:
            processors.append(SeededSampler(options.temperature, options.top_p, options.seed,
                                            len(requests), self.device, top_k=options.top_k))
        if any(f is not None for f in forced):
            targets = [None if f is None else self.tokenizer(f, add_special_tokens=False)["input_ids"]
                       for f in forced]
            processors.append(ForcedAnswers(targets, prompt_len, self.eos_id))
        watch = _Watch(prompt_len, options.max_new_tokens, progress, should_stop, stream,
                       lambda ids: self.tokenizer.batch_decode(ids, skip_special_tokens=True), start)
        mode = self.decoding_mode()
        try:
            out = self.model.generate(**inputs, generation_config=self.generation_config(options, mode),
                                      logits_processor=processors, stopping_criteria=StoppingCriteriaList([watch]),
                                      **NO_MODEL_DEFAULTS)
        except (GenerationInterrupted, torch.OutOfMemoryError, KeyboardInterrupt):
            raise
        except Exception as e:   # a compiler missing or failing on this machine must not fail the critique
            if mode != "compiled" or watch.stopped:
                raise
            log.warning("RationalRewards: compiled decoding failed (%s: %s); using plain decoding from now on",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            self.decoding = "plain"
            return self._generate_batch(requests, forced, options, progress, should_stop, stream, start)
        if watch.stopped:
            raise GenerationInterrupted("critique generation was interrupted")
        return self.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)

    def decoding_mode(self) -> str:
        """The mode this call uses: ``auto`` resolves by device (compiled needs CUDA and Triton)."""
        return resolve_decoding(self.decoding, self.device)

    def generation_config(self, options: GenerationOptions, mode: str = "plain") -> GenerationConfig:
        # Fields left unset would be filled from the checkpoint's generation_config.json (e.g. Qwen2.5-VL's
        # repetition_penalty=1.05, top_k/top_p/temperature), silently changing greedy decoding: pin them
        # to neutral values (repetition_penalty: the caller's, 1.0 by default). Sampling is SeededSampler's job.
        extra: dict = {"disable_compile": mode != "compiled"}   # transformers auto-compiles static caches on CUDA
        if mode in ("static", "compiled"):
            extra["cache_implementation"] = "static"
        if mode == "compiled":
            extra["compile_config"] = self.compile_config or CompileConfig(fullgraph=False)
        return GenerationConfig(max_new_tokens=options.max_new_tokens, do_sample=False, num_beams=1,
                                eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
                                temperature=1.0, top_k=50, top_p=1.0, typical_p=1.0,
                                repetition_penalty=float(options.repetition_penalty),
                                no_repeat_ngram_size=0, min_new_tokens=0, **extra)
