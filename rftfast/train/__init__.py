"""Training: the model I/O the losses read, one optimiser loop, and the stages' training code.

    model_io.py      hidden_states, lm_head_weight: what every loss reads from the model
    loop.py          optimise (AdamW, cosine learning rate, micro-batches across ranks), cosine_lr
    batching.py      pad_batch: examples into a causal-LM batch, labels on the answer only
    runtime.py       TrainConfig: precision, checkpointing, LoRA, DDP/FSDP2 (`trainable`); StepLog
    model.py         ModelConfig, load_policy: a checkpoint, or a tiny Llama and tokenizer from scratch
    sft.py           WarmupConfig, the easy-to-hard Schedule, train_sft
    deficiency.py    DeficiencyConfig, find_deficiencies: answer perplexity and greedy failures
    search_stage.py  SearchStageConfig, search_pairs: the MCTS over the deficient records
    preference.py    PreferenceConfig, train_preference: FusedDPOLoss on step-level `rftfast.mcts.Pair`s
    evaluate.py      heldout_accuracy
    diagnostics.py   verdict_changes, pair_margins, rejected_is_greedy: why a held-out number moved
    compute.py       count_compute: the positions a stage's model passes compute (token passes)

Nothing here knows of the run (`rftfast.stages`, `rftfast.pipeline`): each function takes its own config.
"""

from rftfast.train.batching import pad_batch
from rftfast.train.deficiency import Deficiencies, DeficiencyConfig, answer_perplexities, find_deficiencies
from rftfast.train.evaluate import heldout_accuracy
from rftfast.train.loop import cosine_lr, micro_batches, optimise, rank_micro_batches
from rftfast.train.model import MIN_VOCAB, SPECIAL_TOKENS, ModelConfig, build_tiny_llama, load_policy, train_tokenizer
from rftfast.train.model_io import hidden_states, lm_head_weight
from rftfast.train.preference import PreferenceConfig, pair_batch, reference_logps, train_preference
from rftfast.train.runtime import StepLog, TrainConfig, autocast, gradient_sync, parallel_wrapped, trainable, unwrap
from rftfast.train.search_stage import SearchStageConfig, search_pairs
from rftfast.train.sft import Schedule, WarmupConfig, answer_nll, make_schedule, train_sft

__all__ = [
    "Deficiencies",
    "DeficiencyConfig",
    "MIN_VOCAB",
    "ModelConfig",
    "PreferenceConfig",
    "SPECIAL_TOKENS",
    "Schedule",
    "SearchStageConfig",
    "StepLog",
    "TrainConfig",
    "WarmupConfig",
    "answer_nll",
    "answer_perplexities",
    "autocast",
    "build_tiny_llama",
    "cosine_lr",
    "find_deficiencies",
    "gradient_sync",
    "heldout_accuracy",
    "hidden_states",
    "lm_head_weight",
    "load_policy",
    "make_schedule",
    "micro_batches",
    "optimise",
    "pad_batch",
    "pair_batch",
    "parallel_wrapped",
    "rank_micro_batches",
    "reference_logps",
    "search_pairs",
    "train_preference",
    "train_sft",
    "train_tokenizer",
    "trainable",
    "unwrap",
]
