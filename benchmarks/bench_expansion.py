"""Tree-search expansion on CPU with a tiny Llama: `TransformersGenerator` with and without prefix KV reuse.

The workload is what one MCTS run sends the generator: `--queries` questions share a system prompt that lists the
tool world's fourteen JSON schemas (~1.1k tokens under the benchmark's tokenizer). Each search round sends one
batched `expand` call: at depth 1 every query's prompt gets `--n` children; at depths 2-4, `--width` of the
previous round's children per query are expanded in turn (siblings share everything but their last step).
Children are greedy, so the two runs must produce the same tokens; the script checks that they do and reports
prefill tokens computed and wall time.

The model is a small random Llama (4 layers, hidden 128), large enough that prefill, not Python overhead,
dominates a call; its tokenizer is a byte-level BPE trained on the prompts. Nothing is downloaded.

    python benchmarks/bench_expansion.py            # about a minute on 2 cores
    python benchmarks/bench_expansion.py --quick
"""

from __future__ import annotations

import argparse
import time

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rftfast.data.chat import fallback_prompt
from rftfast.data.toolworld.tools import TOOLS
from rftfast.generation import ExpandRequest, TransformersGenerator

SPECIALS = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]
QUESTIONS = [
    "What is the weather in Paris in celsius?",
    "Convert 12 miles to kilometers.",
    "Book a table for 4 at Chez Marie on 2025-06-01 at 19:30.",
    "What is 17 * 23 + 4?",
    "Find business-class flights from Oslo to Rome on 2025-07-14 for 2 passengers.",
    "Translate 'good morning' to Japanese.",
    "What's the stock price of ACME?",
    "Remind me to call mom tomorrow.",
]


def prompts(queries: int) -> list[str]:
    system = {"role": "system", "content": "You are a careful assistant. Call the tools that answer the request."}
    return [
        fallback_prompt([system, {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], TOOLS)
        for i in range(queries)
    ]


def tokenizer_for(texts: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<pad>")


def model_for(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    return LlamaForCausalLM(config).eval()


def search(
    generator: TransformersGenerator, prompt_ids: list[list[int]], n: int, width: int, depth: int, max_new_tokens: int
) -> list:
    """The rounds of a search; returns every round's children (token ids) for comparison."""
    frontier = [(tuple(ids), len(ids)) for ids in prompt_ids]
    rounds = []
    for _ in range(depth):
        requests = [
            ExpandRequest(prefix, n=n, max_new_tokens=max_new_tokens, temperature=0.0, answer_start=start)
            for prefix, start in frontier
        ]
        children = generator.expand(requests)
        rounds.append([[c.token_ids for c in row] for row in children])
        frontier = []
        for request, row in zip(requests, children):
            # Greedy siblings are identical; give each expanded child a different last token so that they differ
            # in their last step, as sampled siblings do.
            for k, child in enumerate(row[:width]):
                tokens = list(child.token_ids)
                tokens[-1] = (tokens[-1] + k) % generator.tokenizer.vocab_size
                frontier.append((request.prefix_ids + tuple(tokens), request.answer_start))
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--n", type=int, default=4, help="children per expanded node")
    parser.add_argument("--width", type=int, default=2, help="children of each node expanded in the next round")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is stablest on a shared box)")
    parser.add_argument("--quick", action="store_true", help="2 queries, depth 3")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.depth = 2, 3
    torch.set_num_threads(args.threads)

    texts = prompts(args.queries)
    tokenizer = tokenizer_for(texts)
    model = model_for(len(tokenizer))
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    shared = min(len(p) for p in prompt_ids)
    while any(p[:shared] != prompt_ids[0][:shared] for p in prompt_ids):
        shared -= 1

    results = {}
    for name, prefix_cache in (("without reuse", False), ("with reuse", True)):
        TransformersGenerator(model, tokenizer, prefix_cache=prefix_cache).expand(  # warm-up
            [ExpandRequest(tuple(prompt_ids[0][:64]), n=2, max_new_tokens=2, temperature=0.0)]
        )
        generator = TransformersGenerator(model, tokenizer, prefix_cache=prefix_cache)
        started = time.perf_counter()
        rounds = search(generator, prompt_ids, args.n, args.width, args.depth, args.max_new_tokens)
        results[name] = (time.perf_counter() - started, generator.stats, rounds)

    (t_off, s_off, r_off), (t_on, s_on, r_on) = results["without reuse"], results["with reuse"]
    requests = sum(len(r) for r in r_off)
    print(
        f"{args.queries} queries, prompts {min(map(len, prompt_ids))}-{max(map(len, prompt_ids))} tokens "
        f"({shared} shared), depth {args.depth}, n={args.n}, width {args.width}: {requests} requests, "
        f"{s_off.generated} generated tokens; tiny Llama 4x128, {args.threads} thread(s)"
    )
    print(f"{'run':<16} {'prefill computed':>17} {'prefill reused':>15} {'seconds':>9}")
    for name, (seconds, stats, _) in results.items():
        print(f"{name:<16} {stats.prefill_computed:>17,} {stats.prefill_reused:>15,} {seconds:>9.2f}")
    same = r_off == r_on
    print(f"\nsame outputs: {same}")
    print(
        f"prefill tokens computed: {s_off.prefill_computed / s_on.prefill_computed:.1f}x fewer with reuse "
        f"(target >= 5x)"
    )
    print(f"wall time: {t_off / t_on:.1f}x less with reuse (target >= 2x)")
    if not same:
        raise SystemExit("outputs differ between the runs")


if __name__ == "__main__":
    main()
