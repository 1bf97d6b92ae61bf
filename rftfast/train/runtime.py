"""How every training stage runs: precision, gradient checkpointing, LoRA adapters, step logging.

The stages (warm-up SFT, extra SFT, preference) share these switches through `TrainConfig`, so a
user turns on bf16 or LoRA once and every stage honours it.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rftfast import distributed

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class TrainConfig:
    """Shared by every training stage (warm-up, extra SFT, preference)."""

    precision: str = "fp32"  # or "bf16": autocast the forward to bfloat16 (weights and optimizer stay fp32)
    gradient_checkpointing: bool = False
    gradient_accumulation: int = 1  # each batch runs as this many micro-batches (same update, less memory)
    parallel: str = "fsdp2"  # under torchrun / accelerate launch: "fsdp2" (shard weights, grads, optimizer) or "ddp"
    lora_r: int = 0  # > 0: train peft LoRA adapters of this rank, merged into the weights after each stage
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    flush_denormal: bool = True  # CPU: subnormal floats read and written as zero (see `flush_denormals`)
    attention: str = "auto"  # packed passes: "auto", "tree", "flex", "flash" or "dense" (`rftfast.train.packing`)


@contextlib.contextmanager
def flush_denormals(on: bool) -> Iterator[None]:
    """Treat subnormal floats (below 1.2e-38 in fp32) as zero on the CPU for the duration (x86's FTZ/DAZ).

    A trained model's softmax puts most of the vocabulary at probabilities that underflow into the
    subnormal range, and its optimiser moments for unused rows decay into it; x86 CPUs take a slow
    microcode path on every such operand (a 1000 x 1000 matmul of subnormals: ~1.2 s instead of ~7 ms
    on an Intel Xeon; AMD EPYC cores pay far less). Values that small are zero for training purposes.

    The mode is a per-thread CPU register and `torch.set_flush_denormal` sets the calling thread's only,
    so the mode is set on every thread of torch's intra-op pool too (`_on_every_thread`): without that,
    the share of each op that runs on the other threads stays on the slow path. The mode is put back to
    off afterwards, everywhere (torch has no getter for it).
    """
    if not on or not _on_every_thread(True):  # False where the CPU has no such mode
        yield
        return
    try:
        yield
    finally:
        _on_every_thread(False)


_THREAD_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _on_every_thread(flush: bool) -> bool:
    """`torch.set_flush_denormal(flush)` on this thread and on each thread of its OpenMP team (torch's
    intra-op threads: ATen, MKL and oneDNN share it); False where the CPU has no flush-to-zero mode."""
    if not torch.set_flush_denormal(flush):
        return False
    runtime = _openmp_runtime()
    if runtime is not None:
        # one parallel region of the team's size: the runtime reuses the same pooled threads for every
        # later region of up to that size, and each runs the callback (under the GIL, which the call
        # releases); the calling thread is the team's thread 0
        set_here = _THREAD_FUNCTION(lambda _: torch.set_flush_denormal(flush))
        runtime.GOMP_parallel(set_here, None, torch.get_num_threads(), 0)
    return True


@functools.cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's intra-op threads run on, as loaded in this process (GNU's libgomp, or
    LLVM's/Intel's, which export the same `GOMP_parallel` entry), or None (another parallel backend, or no
    /proc to find it in: then only the calling thread's mode is set)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if os.path.basename(path).startswith(("libgomp", "libiomp", "libomp")):
            runtime = ctypes.CDLL(path)  # the library already loaded: the same handle, the same thread pool
            if hasattr(runtime, "GOMP_parallel"):
                runtime.GOMP_parallel.argtypes = [_THREAD_FUNCTION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                runtime.GOMP_parallel.restype = None
                return runtime
    return None


def autocast(device: str | torch.device, precision: str) -> torch.autocast:
    """bf16 autocast for the forward pass (master weights and optimizer state stay fp32)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def trainable(model: PreTrainedModel, cfg: TrainConfig) -> Iterator[torch.nn.Module]:
    """Yield the module to optimise: `model`, a peft LoRA wrapper of it (`cfg.lora_r > 0`), and, when
    several processes were launched, that wrapped in DDP or sharded with FSDP2.

    On exit the adapters are merged into `model`'s weights and removed, checkpointing is turned off,
    and FSDP2's trained shards are gathered back into `model` on every rank, so the caller keeps one
    plain transformers model that saves, generates and serves as usual.
    """
    if cfg.lora_r > 0 and distributed.active() and cfg.parallel == "fsdp2":
        raise ValueError(
            "train.lora_r > 0 with several processes needs train.parallel=ddp (LoRA adapters are "
            "small enough to replicate; FSDP2 of a peft model is not supported here)"
        )
    if cfg.lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ImportError("train.lora_r > 0 needs peft: pip install 'rftfast[lora]'") from None
    if cfg.gradient_checkpointing:
        _checkpointing(model, True)
    wrapped = model
    trainable_before = {name for name, p in model.named_parameters() if p.requires_grad}
    if cfg.lora_r > 0:
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
            task_type="CAUSAL_LM",
        )
        wrapped = get_peft_model(model, lora)
    finished = False
    try:
        if not distributed.active():
            yield wrapped
        elif cfg.parallel == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            yield DistributedDataParallel(wrapped)
        else:
            yield from _fsdp2(model)
        finished = True
    finally:
        if wrapped is not model:
            # In place: `model`'s linear layers are plain again. A failed stage drops its adapters.
            if finished:
                wrapped.merge_and_unload()
            else:
                wrapped.unload()
            for name, p in model.named_parameters():  # peft froze the base weights; undo that
                p.requires_grad_(name in trainable_before)
            with contextlib.suppress(AttributeError):  # older transformers raise when peft added no hook
                model.disable_input_require_grads()  # peft's hook for checkpointing with frozen embeddings
        if cfg.gradient_checkpointing:
            _checkpointing(model, False)
        model.eval()


def _fsdp2(model) -> Iterator:
    """Train a sharded copy of `model` (each decoder layer, then the root, is one FSDP2 unit), then
    load the gathered weights back. The plain model waits on the CPU meanwhile, and the copy is made
    there, so the accelerator holds only shards, their gradients and optimizer state."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    device = next(model.parameters()).device
    model.to("cpu")
    try:
        sharded = copy.deepcopy(model)
        layer_types = tuple(getattr(model, "_no_split_modules", None) or ())
        mesh = None
        if device.type != "cpu":
            from torch.distributed.device_mesh import init_device_mesh

            mesh = init_device_mesh(device.type, (distributed.world_size(),))
        for module in sharded.modules():
            if type(module).__name__ in layer_types:
                fully_shard(module, mesh=mesh)
        fully_shard(sharded, mesh=mesh)  # moves each rank's shards to the mesh's device
        yield sharded
        full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
        model.load_state_dict({k: v.to("cpu") for k, v in full.items()})
        del sharded, full
    finally:
        model.to(device)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (FSDP2 and peft modules answer model attributes themselves)."""
    from torch.nn.parallel import DistributedDataParallel

    return module.module if isinstance(module, DistributedDataParallel) else module


def parallel_wrapped(module: torch.nn.Module) -> bool:
    """Wrapped by DDP or sharded by FSDP2 (whose forward must be called for its hooks to run)."""
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(module, DistributedDataParallel) or _is_fsdp2(module)


def _is_fsdp2(module) -> bool:
    return hasattr(module, "set_requires_gradient_sync")


def gradient_sync(module: torch.nn.Module, on: bool) -> contextlib.AbstractContextManager[None]:
    """A context for one micro-batch's backward: `on=False` skips the gradient all-reduce, which only
    the last micro-batch of an accumulated step needs."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(module, DistributedDataParallel) and not on:
        return module.no_sync()
    if _is_fsdp2(module):
        module.set_requires_gradient_sync(on)
    return contextlib.nullcontext()


def _checkpointing(model, on: bool) -> None:
    """Recompute each decoder layer's activations in the backward (transformers >= 5 renamed the switch)."""
    if hasattr(model, "activation_checkpointing_enable"):
        enable, disable, key = (
            model.activation_checkpointing_enable,
            model.activation_checkpointing_disable,
            "activation_checkpointing_kwargs",
        )
    else:
        enable, disable, key = (
            model.gradient_checkpointing_enable,
            model.gradient_checkpointing_disable,
            "gradient_checkpointing_kwargs",
        )
    # Non-reentrant checkpointing needs no input that requires grad, which LoRA would otherwise need.
    if on:
        enable(**{key: {"use_reentrant": False}})
    else:
        disable()


# Where `StepLog` can mirror metrics.jsonl (the config's `report_to`): the module each one imports, and the
# extra that installs it (`rftfast.config.check_environment` checks them before a run starts).
REPORTERS = {"tensorboard": ("tensorboard", "rftfast[tensorboard]"), "wandb": ("wandb", "rftfast[monitor]")}


def reporter_missing(name: str) -> str:
    """Why `report_to` cannot name `name` here, or "" when its package is installed."""
    import importlib.util

    module, extra = REPORTERS[name]
    if importlib.util.find_spec(module) is not None:
        return ""
    return f"'{name}' needs the {module} package (pip install '{extra}'), which is not installed"


class StepLog:
    """Per-step metrics: appended to `metrics.jsonl` (flushed per line, so a kill loses nothing) and mirrored
    to each of `report_to`: TensorBoard under `<run>/tensorboard`, Weights & Biases under `<run>/wandb`. Each
    line carries its stage's `step` and the run's `global_step`, one count across stages (continued from the
    lines already there when a run resumes), which is every mirror's x-axis, so a run's stages lie end to end.

    A mirror's tag is `<series>/<key>`, `series` being the stage unless the caller names another (the
    evaluations all log to `eval`, so held-out accuracy is one curve across the run, not a point per stage).

    W&B: `wandb_project` (else `WANDB_PROJECT`, else "rftfast"); the mode is `WANDB_MODE`'s, and offline when
    it is unset, so a run never blocks on a login or a network: `wandb sync <run>/wandb/offline-run-*`
    uploads it later. Each process start is its own W&B run, grouped under the run's name: a resumed run
    continues the global step in a new W&B run rather than appending to one whose last steps it redoes.
    `tensorboard=True` is the older spelling of `report_to=["tensorboard"]`."""

    def __init__(
        self,
        run_dir: str | Path,
        report_to: Sequence[str] = (),
        *,
        tensorboard: bool = False,
        wandb_project: str = "",
        run_name: str | None = None,
        config: dict | None = None,
    ) -> None:
        report_to = list(dict.fromkeys([*report_to, *(["tensorboard"] if tensorboard else [])]))
        unknown = [r for r in report_to if r not in REPORTERS]
        if unknown:
            raise ValueError(f"report_to: unknown {unknown} (expected some of {sorted(REPORTERS)})")
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.global_step = 0
        if self.path.exists():
            with self.path.open() as f:
                self.global_step = sum(1 for line in f if line.strip())
        self.file = self.writer = self.wandb_run = None
        try:
            if "tensorboard" in report_to:
                self.writer = _tensorboard_writer(Path(run_dir) / "tensorboard", self.global_step)
            if "wandb" in report_to:
                self.wandb_run = _wandb_run(Path(run_dir), wandb_project, run_name or Path(run_dir).name, config)
        except BaseException:
            self.close(failed=True)
            raise
        self.file = self.path.open("a")

    def __call__(self, stage: str, step: int, metrics: dict[str, float], *, series: str | None = None) -> None:
        self.file.write(json.dumps({"stage": stage, "step": step, "global_step": self.global_step, **metrics}) + "\n")
        self.file.flush()
        tags = {f"{series or stage}/{key}": value for key, value in metrics.items()}
        if self.writer is not None:
            for tag, value in tags.items():
                self.writer.add_scalar(tag, value, self.global_step)
        if self.wandb_run is not None:
            self.wandb_run.log(tags, step=self.global_step)
        self.global_step += 1

    def close(self, failed: bool = False) -> None:
        """Close every sink; `failed` marks the W&B run as ended by an error (its exit code 1)."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=1 if failed else 0)
            self.wandb_run = None


def _tensorboard_writer(log_dir: Path, global_step: int):
    if reporter_missing("tensorboard"):
        raise ImportError(f"report_to: {reporter_missing('tensorboard')}")
    from torch.utils.tensorboard import SummaryWriter

    # A resumed run: the events a killed stage logged at this step and after are hidden, as its lines were cut
    # from metrics.jsonl, so the steps it redoes do not draw over them.
    return SummaryWriter(str(log_dir), purge_step=global_step)


def _wandb_run(run_dir: Path, project: str, name: str, config: dict | None):
    if reporter_missing("wandb"):
        raise ImportError(f"report_to: {reporter_missing('wandb')}")
    import wandb

    return wandb.init(
        project=project or os.environ.get("WANDB_PROJECT") or "rftfast",
        dir=str(run_dir),  # wandb writes <run>/wandb/<mode>-run-<time>-<id>
        name=name,
        group=name,
        config=config,
        mode=_wandb_mode(),
        # a W&B run of its own, whatever run the calling process already has open (>= 0.19.10)
        reinit="create_new",
    )


def _wandb_mode() -> str:
    """WANDB_MODE's mode (read here: wandb reads its environment once per process, at its first run), with its
    older spellings; unset, offline, so a run never waits on a login or a network."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower() or "offline"
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if mode not in ("online", "offline", "disabled", "shared"):
        raise ValueError(f"WANDB_MODE={mode!r}: expected online, offline or disabled")
    return mode
