"""The search stage: step-level preference pairs for the deficient records, from the current policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rftfast import distributed
from rftfast.data.record import Record
from rftfast.mcts import JudgeReward, MixedReward, Pair, SearchConfig, answer_format, ast_reward_in, search

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class SearchStageConfig(SearchConfig):
    """The search stage: how the trees grow (the library's `rftfast.mcts.SearchConfig`, searched with the
    stage's seed), which reward scores the nodes, and which generator serves the policy."""

    reward: str = "ast"  # "ast", "judge", or "mix"
    backend: str = "transformers"  # or "vllm" (GPU; each iteration's checkpoint is served by vLLM)
    tensor_parallel_size: int = 1  # vLLM: GPUs per replica; the launched processes / this = replicas
    gpu_memory_utilization: float = 0.3  # vLLM's share of each GPU (training state lives beside it)
    # Trees searched together, in lockstep; more records are searched in waves of this many. Every round visits
    # every tree, so the trees' prefixes must fit the generator's KV pool (4,096 blocks of 16 positions: ~250
    # prompts of the default run's ~230 tokens) or each round evicts what the next needs (reuse fell from 75%
    # to 11% on 715 trees at once).
    trees_per_wave: int = 128
    # Keep only the search's pairs whose rejected step is what the policy writes greedily at the pair's prefix
    # (`rftfast.train.diagnostics.rejected_is_greedy`, then counted as the method's compute). The others reject a
    # sampled mistake the greedy policy does not make (about 60% in the default run).
    policy_mistakes_only: bool = False


def search_pairs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    cfg: SearchStageConfig,
    seed: int,
    model_path: str | Path | None = None,
    call_format: str | None = None,
) -> tuple[list[Pair], dict]:
    """Run the MCTS over `records`; returns the `rftfast.mcts.Pair`s and the stats the report shows.

    `cfg.backend` picks the generator: transformers on `model` (prefix KV reuse on), or vLLM on the
    checkpoint at `model_path`. With several processes the trees are split across ranks (across vLLM
    data-parallel replicas) and every rank gets all the pairs back, in record order (`Pair.tree` is
    the record's index in `records`). `call_format`: the format the policy writes its calls in (default: its
    chat template's, `rftfast.mcts.answer_format`); children are cut, the truth is cut and the rewards read
    answers in it.
    """
    # Resolved before the generator starts, so a bad name costs no engine start-up.
    call_format = answer_format(tokenizer, cfg.use_chat_template, call_format)
    generator = _generator(model, tokenizer, cfg, seed, model_path)
    part, parts = generator.data_parallel
    local = distributed.shard(records, part, parts)
    ast = ast_reward_in(call_format)
    reward = ast
    if cfg.reward in ("judge", "mix"):
        judge = JudgeReward(generator, tokenizer, call_format=call_format)
        reward = judge if cfg.reward == "judge" else MixedReward([(ast, 0.5), (judge, 0.5)])
    pairs, stats = [], {"simulations": 0}
    waves = []
    for start in range(0, len(local), cfg.trees_per_wave):
        wave = dataclasses.replace(cfg, seed=seed + start)  # the first wave's seed is the stage's
        trees = local[start : start + cfg.trees_per_wave]
        result = search(trees, generator, reward, wave, tokenizer=tokenizer, call_format=call_format)
        # `tree` indexes this wave's records; make it the record's index in `records`.
        pairs += [dataclasses.replace(p, tree=part + parts * (start + p.tree)) for p in result.pairs]
        waves.append(result.stats)
    if waves:
        g = generator.stats
        stats = {
            "simulations": sum(s.simulations for s in waves),
            "nodes": sum(s.nodes for s in waves),
            "search_seconds": sum(s.wall_seconds for s in waves),
            "generator_seconds": sum(s.generator_seconds for s in waves),
            "bookkeeping_seconds": sum(s.bookkeeping_seconds for s in waves),
            "prefill_computed": g.prefill_computed,
            "prefill_reused": g.prefill_reused,
            "waves": len(waves),
        }
    generator.close()  # frees a vLLM engine's GPU memory before training resumes
    # One entry per record share: pairs put back in record order, stats summed (times: the slowest share).
    shares = distributed.gather([(pairs, stats)], part, parts)
    pairs = sorted((p for share, _ in shares for p in share), key=lambda p: p.tree)  # stable: tree order kept
    return pairs, _merge_stats([st for _, st in shares])


def _generator(model, tokenizer, cfg: SearchStageConfig, seed: int, model_path):
    if cfg.backend == "vllm":
        from rftfast.generation import VLLMGenerator

        if model_path is None:
            raise ValueError("search.backend=vllm needs a saved checkpoint: pass model_path")
        tp, world = cfg.tensor_parallel_size, distributed.world_size()
        if world > 1 and world % tp:  # one process: vLLM starts its own tensor-parallel workers
            raise ValueError(f"search.tensor_parallel_size={tp} does not divide the {world} processes")
        return VLLMGenerator(
            str(model_path),
            tensor_parallel_size=tp,
            data_parallel_size=max(1, world // tp),
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            seed=seed,
        )
    from rftfast.generation import TransformersGenerator

    return TransformersGenerator(model, tokenizer, prefix_cache=True)


def _merge_stats(shares: list[dict]) -> dict:
    done = [s for s in shares if s.get("simulations")]
    if not done:
        return {"simulations": 0}
    total = {
        k: sum(s[k] for s in done) for k in ("simulations", "nodes", "prefill_computed", "prefill_reused", "waves")
    }
    wall = max(s["search_seconds"] for s in done)
    bookkeeping = sum(s["bookkeeping_seconds"] for s in done) / max(sum(s["search_seconds"] for s in done), 1e-9)
    prefill = total["prefill_computed"] + total["prefill_reused"]
    return {
        **total,
        "search_seconds": round(wall, 2),
        "generator_seconds": round(max(s["generator_seconds"] for s in done), 2),
        "bookkeeping_fraction": round(bookkeeping, 4),
        "prefill_reuse": round(total["prefill_reused"] / prefill, 3) if prefill else 0.0,
    }
