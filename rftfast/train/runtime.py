"""How every training stage runs: precision, gradient checkpointing, LoRA adapters, step logging.

The stages (warm-up SFT, extra SFT, preference) share these switches through `TrainConfig`, so a
user turns on bf16 or LoRA once and every stage honours it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from rftfast.config import TrainConfig


def autocast(device: str | torch.device, precision: str):
    """bf16 autocast for the forward pass (master weights and optimizer state stay fp32)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def trainable(model, cfg: TrainConfig) -> Iterator:
    """Yield the module to optimise: `model` itself, or a peft LoRA wrapper of it when `cfg.lora_r > 0`.

    On exit the adapters are merged into `model`'s weights and removed, and checkpointing is turned
    off, so the caller keeps one plain transformers model that saves, generates and serves as usual.
    """
    if cfg.gradient_checkpointing:
        _checkpointing(model, True)
    wrapped = model
    if cfg.lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ImportError("train.lora_r > 0 needs peft: pip install 'rftfast[lora]'") from None
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM")
        wrapped = get_peft_model(model, lora)
    try:
        yield wrapped
    finally:
        if wrapped is not model:
            wrapped.merge_and_unload()  # merges in place: `model`'s linear layers are plain again
        if cfg.gradient_checkpointing:
            _checkpointing(model, False)
        model.eval()


def _checkpointing(model, on: bool) -> None:
    """Recompute each decoder layer's activations in the backward (transformers >= 5 renamed the switch)."""
    if hasattr(model, "activation_checkpointing_enable"):
        enable, disable, key = model.activation_checkpointing_enable, model.activation_checkpointing_disable, \
            "activation_checkpointing_kwargs"
    else:
        enable, disable, key = model.gradient_checkpointing_enable, model.gradient_checkpointing_disable, \
            "gradient_checkpointing_kwargs"
    # Non-reentrant checkpointing needs no input that requires grad, which LoRA would otherwise need.
    if on:
        enable(**{key: {"use_reentrant": False}})
    else:
        disable()


class StepLog:
    """Per-step metrics: appended to `metrics.jsonl` (flushed per line, so a kill loses nothing) and,
    when asked, to TensorBoard under `<run>/tensorboard`."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = False):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ImportError("tensorboard = true needs the tensorboard package: "
                                  "pip install 'rftfast[tensorboard]'") from None
            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def __call__(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        self.file.write(json.dumps({"stage": stage, "step": step, **metrics}) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"{stage}/{key}", value, step)

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()
