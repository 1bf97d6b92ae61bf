"""Run configuration: the library's own config objects in one `RunConfig`, loaded from YAML and
`--set a.b=value` overrides.

Each section is the config of the code that reads it, so a key means one thing everywhere: `search` is
the MCTS's `rftfast.mcts.SearchConfig` (with `pairs`, its `PairConfig`) plus the search stage's reward and
generator (`rftfast.train.search_stage.SearchStageConfig`); `preference` holds the objective's parameters
(`rftfast.losses.ObjectiveParams`); `model`, `warmup`, `deficiency` and `train` are those of
`rftfast.train`. `RunConfig()` with no arguments is the embedded default run: the tool world and a tiny
Llama trained from scratch on CPU, searching smaller trees than the library's defaults (`default_search`).

Every key is checked: an unknown key or a value of the wrong type stops with its key path
(`search.rounds: expected int, got 'many'`), and so does a value out of range (`validate`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rftfast.answer import FORMATS
from rftfast.mcts import PairConfig
from rftfast.mcts.forest import BACKUPS, RULES
from rftfast.train.deficiency import DeficiencyConfig
from rftfast.train.model import MIN_VOCAB, ModelConfig
from rftfast.train.packing import ATTENTIONS
from rftfast.train.preference import PreferenceConfig
from rftfast.train.runtime import REPORTERS, TrainConfig, reporter_missing
from rftfast.train.search_stage import SearchStageConfig
from rftfast.train.sft import WarmupConfig

__all__ = [
    "MIN_VOCAB",
    "ConfigError",
    "DataConfig",
    "DeficiencyConfig",
    "EvalConfig",
    "ModelConfig",
    "PreferenceConfig",
    "RunConfig",
    "SearchStageConfig",
    "TrainConfig",
    "WarmupConfig",
    "check_environment",
    "load_config",
    "validate",
]


class ConfigError(ValueError):
    """A configuration key or value that does not fit; the message starts with its key path."""


@dataclass
class DataConfig:
    source: str = "toolworld"  # or a canonical .jsonl/.json/.parquet file
    num_train: int = 8000
    num_heldout: int = 240
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    seed: int = 0


@dataclass
class EvalConfig:
    max_new_tokens: int = 64
    batch_size: int = 16


def default_search() -> SearchStageConfig:
    """The default run's search: 4 rounds of 3 samples, steps of at most 24 tokens, trees 6 steps deep,
    pairs 0.2 apart, and the ground truth's next step as chosen wherever a node lies on its path."""
    return SearchStageConfig(
        rounds=4,
        samples_per_expansion=3,
        max_depth=6,
        max_new_tokens=24,
        top_p=0.95,
        ground_truth_chosen=True,
        pairs=PairConfig(min_gap=0.2),
    )


@dataclass
class RunConfig:
    name: str = "default"
    out_dir: str = "runs"
    seed: int = 0
    iterations: int = 2
    device: str = "cpu"
    extra_sft: bool = False  # the ablation: spend the iterations' compute on more SFT instead
    # With extra_sft, each iteration's SFT trains on about this many positions (0: the preference stage's
    # step count instead); `rftfast compare` sets it to what the preference stages trained on.
    extra_sft_tokens: int = 0
    # Where every metrics row also goes (always to <run>/metrics.jsonl): "tensorboard" (<run>/tensorboard) and
    # "wandb" (<run>/wandb; offline unless WANDB_MODE says otherwise), see `rftfast.train.runtime.StepLog`.
    report_to: list[str] = field(default_factory=list)
    wandb_project: str = ""  # empty: $WANDB_PROJECT, else "rftfast"
    tensorboard: bool = False  # the older spelling of report_to: [tensorboard], still read (configs and runs have it)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    deficiency: DeficiencyConfig = field(default_factory=DeficiencyConfig)
    search: SearchStageConfig = field(default_factory=default_search)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def reporters(self) -> list[str]:
        """`report_to` with the `tensorboard: true` alias folded in, each once, in order."""
        return list(dict.fromkeys([*self.report_to, *(["tensorboard"] if self.tensorboard else [])]))

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "warmup.order": ("easy_to_hard", "shuffled"),
    "warmup.difficulty": ("level", "steps", "perplexity"),
    "search.rule": tuple(RULES),
    "search.backup": tuple(BACKUPS),
    "search.pairs.value": ("mean", "q", "reward"),
    "search.reward": ("ast", "judge", "mix"),
    "search.backend": ("transformers", "vllm"),
    "preference.reference": ("precomputed", "frozen"),
    "preference.replay_loss": ("nll", "kl"),
    "train.precision": ("fp32", "bf16"),
    "train.parallel": ("fsdp2", "ddp"),
    "train.attention": ATTENTIONS,
    "model.call_format": (None, *FORMATS),
}


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    """`value` checked against the field's type annotation (ints widen to floats, nothing else)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {annotation}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(annotation)
        if item is str and isinstance(value, str):
            value = [value]  # `--set report_to=wandb` means the one-item list, as YAML's [wandb] would
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, path)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # YAML 1.1 reads `1e-3` (no dot) as a string; a float field takes it as the number it spells.
        try:
            return float(value)
        except ValueError:
            pass
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if annotation in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls, values: Any, path: str = "", base: Any = None):
    """`base` (default `cls()`) with the keys of `values` replaced; a section keeps the defaults the run
    gives it (`RunConfig.search` is `default_search()`, not `SearchStageConfig()`)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {values!r}")
    base = cls() if base is None else base
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(f"{key_path}: unknown key (expected one of {sorted(names)})")
        section = getattr(base, key)
        if dataclasses.is_dataclass(section):
            kwargs[key] = _build(type(section), value, key_path, section)
        else:
            kwargs[key] = _coerce(value, hints[key], key_path)
        if key_path in CHOICES and kwargs[key] not in CHOICES[key_path]:
            raise ConfigError(f"{key_path}: expected one of {CHOICES[key_path]}, got {kwargs[key]!r}")
    try:
        return dataclasses.replace(base, **kwargs)
    except ValueError as e:  # the library's own check (`rftfast.mcts.SearchConfig`): "name: expected ..."
        raise ConfigError(f"{path}.{e}" if path else str(e)) from None


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one folder under out_dir: no separators, no `..`
DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?|mps")


def _check_ranges(cfg: RunConfig) -> None:
    """Every value's range, and the keys that must agree with each other, checked before anything runs."""
    m, d, w, f, s, p, t, e = (
        cfg.model,
        cfg.data,
        cfg.warmup,
        cfg.deficiency,
        cfg.search,
        cfg.preference,
        cfg.train,
        cfg.eval,
    )
    checks = [
        (
            "name",
            RUN_NAME.fullmatch(cfg.name) is not None,
            "a plain folder name under out_dir (letters, digits, '.', '_', '-'; no '/' or '..')",
        ),
        ("seed", cfg.seed >= 0, ">= 0"),
        ("iterations", cfg.iterations >= 0, ">= 0"),
        ("extra_sft_tokens", cfg.extra_sft_tokens >= 0, ">= 0"),
        (
            "report_to",
            set(cfg.report_to) <= set(REPORTERS),
            f"a list whose items are {' or '.join(map(repr, REPORTERS))} (YAML: report_to: [tensorboard, wandb])",
        ),
        (
            "wandb_project",
            len(cfg.wandb_project) <= 128 and not set(cfg.wandb_project) & set("/\\#?%:"),
            "a W&B project name: at most 128 characters, none of / \\ # ? % :",
        ),
        ("device", DEVICE.fullmatch(cfg.device) is not None, "'cpu', 'cuda', 'cuda:N' or 'mps'"),
        ("model.hidden_size", m.hidden_size >= 1, ">= 1"),
        ("model.num_layers", m.num_layers >= 1, ">= 1"),
        (
            "model.num_heads",
            m.num_heads >= 1 and m.hidden_size % m.num_heads == 0,
            ">= 1 and a divisor of model.hidden_size",
        ),
        (
            "model.num_kv_heads",
            m.num_kv_heads >= 1 and m.num_heads % max(1, m.num_kv_heads) == 0,
            ">= 1 and a divisor of model.num_heads",
        ),
        ("model.intermediate_size", m.intermediate_size >= 1, ">= 1"),
        (
            "model.vocab_size",
            m.path is not None or m.vocab_size >= MIN_VOCAB,
            f">= {MIN_VOCAB} (the 256 bytes and the special tokens of the byte-level tokenizer)",
        ),
        ("model.max_length", m.max_length >= 2, ">= 2 (a prompt token and an answer token)"),
        ("data.num_train", d.num_train >= 1, ">= 1"),
        ("data.num_heldout", d.num_heldout >= 1, ">= 1"),
        ("data.levels", bool(d.levels) and set(d.levels) <= set(range(1, 7)), "a non-empty list of levels 1-6"),
        ("warmup.buckets", w.buckets >= 1, ">= 1"),
        ("warmup.epochs", w.epochs > 0, "> 0"),
        ("warmup.replay", 0 <= w.replay < 1, "in [0, 1)"),
        ("warmup.lr", w.lr > 0, "> 0"),
        ("warmup.batch_size", w.batch_size >= 1, ">= 1"),
        ("warmup.warmup_steps", w.warmup_steps >= 0, ">= 0"),
        ("warmup.length_group", w.length_group >= 1, ">= 1"),
        ("deficiency.ratio", 0 < f.ratio <= 1, "in (0, 1]"),
        ("deficiency.max_new_tokens", f.max_new_tokens >= 1, ">= 1"),
        ("deficiency.max_records", f.max_records >= 1, ">= 1"),
        ("search.rounds", s.rounds >= 1, ">= 1"),
        ("search.samples_per_expansion", s.samples_per_expansion >= 1, ">= 1"),
        ("search.leaves_per_tree", s.leaves_per_tree >= 1, ">= 1"),
        ("search.max_depth", s.max_depth >= 1, ">= 1"),
        ("search.c", s.c >= 0, ">= 0"),
        ("search.temperature", s.temperature > 0, "> 0"),
        ("search.top_p", 0 < s.top_p <= 1, "in (0, 1]"),
        ("search.max_new_tokens", s.max_new_tokens >= 1, ">= 1"),
        ("search.virtual_loss", s.virtual_loss >= 0, ">= 0"),
        (
            "search.seed",
            s.seed == SearchStageConfig.seed,
            f"{SearchStageConfig.seed!r}: the run seeds each search from `seed` and the stage's name",
        ),
        (
            "search.use_chat_template",
            s.use_chat_template is SearchStageConfig.use_chat_template,
            f"{SearchStageConfig.use_chat_template!r}: the run renders the search's prompts as its training examples",
        ),
        ("search.pairs.min_gap", s.pairs.min_gap >= 0, ">= 0"),
        ("search.pairs.max_overlap", 0 <= s.pairs.max_overlap <= 1, "in [0, 1]"),
        ("search.tensor_parallel_size", s.tensor_parallel_size >= 1, ">= 1"),
        ("search.trees_per_wave", s.trees_per_wave >= 1, ">= 1"),
        ("search.gpu_memory_utilization", 0 < s.gpu_memory_utilization <= 1, "in (0, 1]"),
        ("preference.lr", p.lr > 0, "> 0"),
        ("preference.epochs", p.epochs > 0, "> 0"),
        ("preference.batch_size", p.batch_size >= 1, ">= 1"),
        ("preference.nll_weight", p.nll_weight >= 0, ">= 0"),
        ("preference.replay", p.replay >= 0, ">= 0"),
        ("preference.replay_weight", p.replay_weight > 0, "> 0"),
        ("preference.pair_history", p.pair_history >= 0, ">= 0"),
        ("train.gradient_accumulation", t.gradient_accumulation >= 1, ">= 1"),
        ("train.lora_r", t.lora_r >= 0, ">= 0"),
        ("train.lora_alpha", t.lora_alpha >= 1, ">= 1"),
        ("train.lora_dropout", 0 <= t.lora_dropout < 1, "in [0, 1)"),
        ("train.lora_targets", t.lora_r == 0 or bool(t.lora_targets), "non-empty when train.lora_r > 0"),
        ("eval.max_new_tokens", e.max_new_tokens >= 1, ">= 1"),
        ("eval.batch_size", e.batch_size >= 1, ">= 1"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{key}: expected {expected}, got {_value(cfg, key)!r}")
    _check_objective(p)


def check_environment(cfg: RunConfig) -> None:
    """What the config needs of this machine (packages, devices); `run()` checks it before any work.
    Kept apart from the value checks so a GPU config can be loaded and checked on a laptop."""
    source = Path(cfg.data.source)
    if cfg.data.source != "toolworld" and source.suffix in (".json", ".jsonl", ".parquet") and not source.is_file():
        raise ConfigError(f"data.source: no such file: {source}")
    if cfg.train.attention in ("flex", "flash") and not cfg.device.startswith("cuda"):
        raise ConfigError(f"train.attention: {cfg.train.attention!r} runs on CUDA only; device is {cfg.device!r}")
    if cfg.train.attention == "flash" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError(
            "train.attention: 'flash' needs the flash-attn package (pip install 'rftfast[flash]'), not installed here"
        )
    if cfg.search.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "search.backend: 'vllm' needs the vllm package (pip install 'rftfast[vllm]'), which is not installed"
        )
    for reporter in cfg.reporters:  # here, not after the warm-up's hours: the mirrors open when the run starts
        if why := reporter_missing(reporter):
            raise ConfigError(f"{'report_to' if reporter in cfg.report_to else 'tensorboard'}: {why}")
    if cfg.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device: {cfg.device!r} asked for, but torch sees no CUDA device")


def _check_objective(p: PreferenceConfig) -> None:
    """The loss's own validation (one home for the objectives' rules), reported under `preference.`."""
    if p.loss_type == "dpo":
        raise ConfigError("preference.loss_type: 'dpo' is called 'sigmoid' (TRL's name for the DPO loss)")
    try:
        p.loss()
    except ValueError as err:
        raise ConfigError(f"preference.{err}") from None


def _value(cfg: RunConfig, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _check_finite(cfg: Any, path: str = "") -> None:
    """NaN or ±inf in any float key (YAML spells them .nan and .inf) is refused."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{path}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The default config, updated by a YAML file and then by `key.path=value` overrides."""
    values: dict = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values = loaded
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        nested: dict = {}
        cursor = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = yaml.safe_load(raw)
        values = _merge(values, nested)
    cfg = _build(RunConfig, values)
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError, naming the key, for any value out of range (`run()` calls it too, so a config
    built in Python is held to the same rules as a loaded one)."""
    _check_finite(cfg)
    _check_ranges(cfg)
