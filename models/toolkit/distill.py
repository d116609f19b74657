"""Distil a PARROT export into a student critic: a LoRA SFT run with TRL + PEFT.

The student is loaded through the critic loader (so a folder name, a path or an id resolve the
same way, offline first), trained on ``trl.jsonl`` of the export (prompt-completion: the loss
covers the critique, not the prompt), and its LoRA adapter is saved as safetensors. Load it back
with ``load_critic(name, dirs, adapter=<adapter_dir>)`` (CLI: ``--adapter``). The authors trained
with LLaMA-Factory on the same data (the ``dataset_info.json`` of the export); this path needs
only ``pip install trl peft datasets``.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

# The language model's projections; the vision tower stays frozen (what SFT of a VLM critic usually tunes).
LM_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 100
    learning_rate: float = 1e-4
    batch_size: int = 1
    lora_r: int = 16
    lora_alpha: int | None = None        # None: 2 * r
    lora_dropout: float = 0.0
    target_modules: str = LM_TARGETS
    seed: int = 0
    max_pixels: int | None = None        # None: the checkpoint's processor decides (SFT used 802816)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lora_r < 1 or self.learning_rate <= 0:
            raise ValueError("steps, batch_size and lora_r must be >= 1 and learning_rate > 0")


@dataclass
class DistillResult:
    adapter_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)


def _require() -> None:
    missing = [m for m in ("trl", "peft", "datasets") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"distillation needs TRL, PEFT and datasets ({', '.join(missing)} missing): "
                           "pip install trl peft datasets")


def load_export(export_dir: str | Path):
    """``trl.jsonl`` of an export as a ``datasets.Dataset`` whose ``images`` are decoded images."""
    import datasets

    export_dir = Path(export_dir)
    path = export_dir / "trl.jsonl"
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        raise FileNotFoundError(f"{path} is missing or empty: run the export phase first (and check that some "
                                "pairs survived the filters)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ds = datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"],
                                      "images": [str(export_dir / p) for p in r["images"]]} for r in rows])
    image_list = datasets.List(datasets.Image()) if hasattr(datasets, "List") else datasets.Sequence(datasets.Image())
    return ds.cast_column("images", image_list)


def distill(export_dir: str | Path, student: str, search_dirs: Sequence[str | Path], out_dir: str | Path,
            config: DistillConfig | None = None, *, allow_download: bool = False) -> DistillResult:
    """Train a LoRA on the export; return where the adapter is and the logged training losses."""
    _require()
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from ..runtime.loader import load_critic

    config = config or DistillConfig()
    out_dir = Path(out_dir)
    dataset = load_export(export_dir)
    critic = load_critic(student, search_dirs, allow_download=allow_download, dtype="auto", device="auto",
                         decoding="plain")
    model, processor = critic.backend.model, critic.backend.processor
    if config.max_pixels is not None and hasattr(processor, "image_processor"):
        processor.image_processor.max_pixels = config.max_pixels
    model.train()
    args = SFTConfig(output_dir=str(out_dir / "trainer"), max_steps=config.steps,
                     per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=1,
                     learning_rate=config.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
                     logging_steps=1, save_strategy="no", report_to=[], seed=config.seed,
                     max_length=None, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                     bf16=model.dtype == torch.bfloat16, fp16=False, remove_unused_columns=False,
                     disable_tqdm=True)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha or 2 * config.lora_r,
                      lora_dropout=config.lora_dropout, target_modules=config.target_modules, bias="none",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         peft_config=lora)
    trainer.train()
    adapter_dir = out_dir / "adapter"
    trainer.model.save_pretrained(str(adapter_dir), safe_serialization=True)
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    (out_dir / "train_log.json").write_text(json.dumps({"losses": losses, "student": student,
                                                        "export": str(export_dir)}, indent=2))
    return DistillResult(adapter_dir, trainer.state.global_step, losses)
