"""Tree packing: sequences that share prefixes, each prefix computed once, in one row without padding.

A step-level pair is a long shared prefix (prompt + answer so far) and two short steps; several pairs of
one record share the prompt, and warm-up examples share the system preamble. `pack_trees` merges the
sequences of each `TokenTree` into a trie whose nodes (one per distinct token) are laid out in depth-first
order in one row `[1, L]`. A token sits at its depth along its own branch (`position_ids`) and attends to
its ancestors only, so its hidden state is exactly the one it has in its own unpacked row; each original
sequence reads its scored hidden states back through `label_index`.

Attention goes through transformers' attention interface, so any `AutoModelForCausalLM` runs unmodified:

- ``"tree"`` (CPU, and GPU without FlexAttention): rftfast's registered attention. The trie is cut into
  chains (runs of tokens without branching); each chain's queries attend to its ancestors and, causally,
  to itself, in three padded SDPA calls a layer (root chains, short chains, long chains): the work is
  that of the unpacked rows' causal attention, without the repeated prefixes.
- ``"flex"`` (GPU): transformers' FlexAttention with a block mask of the same tree.
- ``"flash"`` (GPU with flash-attn, unbranched packs only): flash-attn's varlen kernel, which transformers
  picks from position ids that restart at 0 for every sequence.
- ``"dense"``: the model's own SDPA with the full `[L, L]` ancestor mask; quadratic in L, the oracle.

Use `packed_attention(model, batch)` around the whole pass (forward and backward: recomputed
activations under gradient checkpointing go through the same attention), and `packed_hidden_states`
for the forward.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rftfast.train.model_io import hidden_states
from rftfast.train.runtime import unwrap

ATTENTIONS = ("auto", "tree", "flex", "flash", "dense")
TREE_ATTENTION = "rftfast_tree"  # the name rftfast's attention is registered under in transformers


@dataclass(frozen=True)
class TokenTree:
    """Sequences that share prefixes, e.g. a prompt and the continuations that branch off it.

    `label_starts[i]` is the index of the first token of `sequences[i]` that is scored (predicted by the
    hidden state before it), as `pad_batch`'s `label_starts`.
    """

    sequences: Sequence[Sequence[int]]
    label_starts: Sequence[int]


@dataclass(frozen=True)
class ChainGroup:
    """Chains (runs of the row without branching) attended to in one SDPA call: each chain's queries and
    keys (its ancestors, then itself) gathered into a padded [chains, length] layout."""

    queries: Tensor  # [G * max_queries] row positions (padding slots repeat a valid one)
    keys: Tensor  # [G * max_keys]
    shape: tuple[int, int, int]  # (G, max_queries, max_keys)
    mask: Tensor | None  # [G, 1, max_queries, max_keys] bool; None: root chains, plain causal


@dataclass(frozen=True)
class Chains:
    """The row's chains in a few groups, and where each row position's output is in their padded outputs."""

    groups: tuple[ChainGroup, ...]
    inverse: Tensor  # [L] the flat index of each position's output slot, over the groups in order
    count: int  # chains in all


@dataclass(frozen=True)
class PackedBatch:
    """Trees packed into one row, and where each original sequence's scored tokens are."""

    input_ids: Tensor  # [1, L] the distinct tokens, depth-first
    position_ids: Tensor  # [1, L] each token's depth along its own branch
    subtree_end: Tensor  # [L] one past the last descendant: j is an ancestor-or-self of i iff j <= i < end[j]
    chains: Chains
    label_index: Tensor  # [M] the row position whose hidden state scores each label
    labels: Tensor  # [M] the next tokens, sequence after sequence
    cu_seqlens: Tensor  # [S + 1] each sequence's labels are labels[cu[s]:cu[s + 1]]
    sequence_tokens: int  # tokens of the sequences one by one (what unpacked rows compute, before padding)
    branched: bool  # some token has two children (else every tree is one plain sequence)

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]

    @property
    def num_sequences(self) -> int:
        return self.cu_seqlens.numel() - 1

    def dense_mask(self) -> Tensor:
        """[1, 1, L, L] bool, True where a token may attend (its ancestors and itself)."""
        j = torch.arange(self.num_tokens, device=self.input_ids.device)
        return ((j[None, :] <= j[:, None]) & (j[:, None] < self.subtree_end[None, :]))[None, None]


def pack_trees(trees: Sequence[TokenTree], device: str | torch.device = "cpu") -> PackedBatch:
    """Pack `trees` (ValueError for a malformed one) into one row; sequences keep their order, tree by tree.

    Built with array operations, a sequence (not a token) at a time: the layout is made on the training
    loop's thread, between steps, where a per-token Python loop cost a tenth of a preference epoch.
    """
    if not trees:
        raise ValueError("pack_trees: no trees to pack")
    checked = [_checked(tree, t) for t, tree in enumerate(trees)]
    total = sum(len(s) for seqs in checked for s in seqs)
    tokens = np.empty(total, np.int64)  # at most `total` nodes; cut to the count laid out at the end
    depth = np.empty(total, np.int64)
    parent = np.empty(total, np.int64)
    end = np.empty(total, np.int64)
    label_index: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    cu = [0]
    n = 0
    for tree, seqs in zip(trees, checked, strict=True):
        paths: list[np.ndarray] = [_NO_PATH] * len(seqs)
        prev, prev_path = _NO_PATH, _NO_PATH
        # Sorted sequences walk the trie depth-first (children in token order); the shared prefix with
        # the previous one is the part already laid out, and the previous one's nodes past it are done.
        for i in sorted(range(len(seqs)), key=lambda i: seqs[i].tolist()):
            s = seqs[i]
            shared = _common_prefix(prev, s)
            end[prev_path[shared:]] = n
            added = len(s) - shared
            new = np.arange(n, n + added)
            tokens[n : n + added] = s[shared:]
            depth[n : n + added] = np.arange(shared, len(s))
            parent[n : n + added] = new - 1
            parent[n] = prev_path[shared - 1] if shared else -1
            n += added
            paths[i] = prev_path = np.concatenate([prev_path[:shared], new])
            prev = s
        end[prev_path] = n
        for s, path, start in zip(seqs, paths, tree.label_starts, strict=True):
            first = max(start, 1)
            label_index.append(path[first - 1 : len(s) - 1])
            labels.append(s[first:])
            cu.append(cu[-1] + len(s) - first)
    as_tensor = lambda xs: torch.from_numpy(np.ascontiguousarray(xs, dtype=np.int64)).to(device)  # noqa: E731
    chains, branched = _chains(parent[:n], device)
    return PackedBatch(
        input_ids=as_tensor(tokens[:n])[None],
        position_ids=as_tensor(depth[:n])[None],
        subtree_end=as_tensor(end[:n]),
        chains=chains,
        label_index=as_tensor(np.concatenate(label_index)),
        labels=as_tensor(np.concatenate(labels)),
        cu_seqlens=as_tensor(cu),
        sequence_tokens=total,
        branched=branched,
    )


_NO_PATH = np.empty(0, np.int64)


def _checked(tree: TokenTree, t: int) -> list[np.ndarray]:
    if not isinstance(tree, TokenTree):
        raise ValueError(f"pack_trees: tree {t} is a {type(tree).__name__}, not a TokenTree")
    if not tree.sequences:
        raise ValueError(f"pack_trees: tree {t} has no sequences")
    if len(tree.label_starts) != len(tree.sequences):
        raise ValueError(
            f"pack_trees: tree {t} has {len(tree.label_starts)} label starts for {len(tree.sequences)} sequences"
        )
    seqs = []
    for i, (s, start) in enumerate(zip(tree.sequences, tree.label_starts, strict=True)):
        # an integer dtype is what ints (and int arrays) make; floats, bools, strings and mixtures make others
        array = np.asarray(s) if len(s) else _NO_PATH
        if not len(array):
            raise ValueError(f"pack_trees: tree {t}, sequence {i} is empty")
        if array.ndim != 1 or array.dtype.kind not in "iu" or array.min() < 0:
            raise ValueError(f"pack_trees: tree {t}, sequence {i} holds a token that is not an int >= 0")
        if not (isinstance(start, int) and not isinstance(start, bool) and 0 <= start <= len(array)):
            raise ValueError(f"pack_trees: tree {t}, sequence {i}: label start {start!r} is not in [0, {len(array)}]")
        seqs.append(array.astype(np.int64, copy=False))
    return seqs


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


SHORT_CHAIN = 16  # chains of at most this many tokens (a pair's steps) are attended to together


def _chains(parent: np.ndarray, device) -> tuple[Chains, bool]:
    """Cut the depth-first row into runs without branching and group them for attention: the root chains
    (causal over themselves), the short chains and the long ones (each over its ancestors, then itself).
    A few calls per layer instead of one per chain; the padding is only in the attention."""
    n = len(parent)
    children = np.bincount(parent[parent >= 0], minlength=n)
    starts = np.flatnonzero((parent < 0) | (children[np.maximum(parent, 0)] > 1))
    bounds = np.append(starts, n)
    chain_of = np.repeat(starts, np.diff(bounds))  # the start of the run each node is in
    roots, short, long = [], [], []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        ranges = []  # the ancestors as contiguous runs, deepest first
        p = int(parent[a])
        while p >= 0:
            ranges.append(np.arange(chain_of[p], p + 1))
            p = int(parent[chain_of[p]])
        ancestors = np.concatenate(ranges[::-1]) if ranges else _NO_PATH
        chain = (np.arange(a, b), ancestors)
        (roots if not ranges else short if b - a <= SHORT_CHAIN else long).append(chain)
    groups, slots = [], np.empty(n, np.int64)
    offset = 0
    for members in (roots, short, long):
        if not members:
            continue
        group = _group(members, causal=members is roots, device=device)
        g, q, _ = group.shape
        for c, (own, _) in enumerate(members):
            slots[own] = offset + c * q + np.arange(len(own))
        offset += g * q
        groups.append(group)
    inverse = torch.from_numpy(slots).to(device)
    return Chains(tuple(groups), inverse, len(starts)), bool((children > 1).any())


def _group(members: list[tuple[np.ndarray, np.ndarray]], causal: bool, device) -> ChainGroup:
    own_len = np.array([len(own) for own, _ in members])
    anc_len = np.array([len(anc) for _, anc in members])
    max_q, max_k = int(own_len.max()), int((own_len + anc_len).max())
    # padding slots repeat the chain's first token (their outputs are dropped)
    queries = np.concatenate([np.pad(own, (0, max_q - len(own)), constant_values=own[0]) for own, _ in members])
    keys = np.concatenate(
        [np.pad(np.concatenate([anc, own]), (0, max_k - len(anc) - len(own)), constant_values=own[0])
         for own, anc in members]
    )  # fmt: skip
    mask = None
    if not causal:
        # a chain's query i sees its ancestors and, causally, its own tokens up to i; a padding query sees
        # one key, so no row of the softmax is empty
        i = np.arange(max_q)[None, :, None]
        j = np.arange(max_k)[None, None, :]
        q, anc = own_len[:, None, None], anc_len[:, None, None]
        real = (i < q) & ((j < anc) | ((j >= anc) & (j - anc <= i)))
        mask = torch.from_numpy(real | ((i >= q) & (j == 0)))[:, None].to(device)
    as_tensor = lambda xs: torch.from_numpy(xs.astype(np.int64, copy=False)).to(device)  # noqa: E731
    return ChainGroup(as_tensor(queries), as_tensor(keys), (len(members), max_q, max_k), mask)


# ----------------------------------------------------------------------------- attention


def resolve_attention(attention: str, device: torch.device, branched: bool) -> str:
    """The backend "auto" stands for on `device`, for packs that branch or not: flash-attn for unbranched
    packs on CUDA where it is installed, FlexAttention on CUDA, rftfast's chain attention elsewhere."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention: unknown attention {attention!r}; expected one of {ATTENTIONS}")
    if attention != "auto":
        return attention
    if device.type != "cuda":
        return "tree"
    if not branched and importlib.util.find_spec("flash_attn") is not None:
        return "flash"
    return "flex"


def _tree_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: chain attention when a packed batch is passed, else SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch = kwargs.pop("packed_batch", None)
    if batch is None:  # an ordinary call (generation, an unpacked pass) while the tree attention is set
        if attention_mask is _PACKED_MASK:
            raise RuntimeError("a packed batch reached the attention without its layout (call packed_hidden_states)")
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    groups = query.shape[1] // key.shape[1]
    gqa = {}
    if groups > 1:  # grouped-query attention: each key head serves `groups` query heads
        if _SDPA_GQA:  # SDPA reads the shared heads in place: half the keys and values to gather (2 kv heads)
            gqa["enable_gqa"] = True
        else:
            key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    # [L, heads, dim] rows, gathered per chain group into a padded [chains, heads, length, dim] layout
    q_rows, k_rows, v_rows = (t[0].transpose(0, 1) for t in (query, key, value))
    p = dropout if module.training else 0.0
    outs = []
    for group in batch.chains.groups:
        g, max_q, max_k = group.shape
        q = q_rows.index_select(0, group.queries).view(g, max_q, *q_rows.shape[1:]).transpose(1, 2)
        k = k_rows.index_select(0, group.keys).view(g, max_k, *k_rows.shape[1:]).transpose(1, 2)
        v = v_rows.index_select(0, group.keys).view(g, max_k, *v_rows.shape[1:]).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=group.mask, is_causal=group.mask is None, dropout_p=p, scale=scaling, **gqa
        )
        outs.append(out.transpose(1, 2).reshape(g * max_q, *out.shape[1:2], out.shape[3]))
    return torch.cat(outs).index_select(0, batch.chains.inverse)[None], None


_SDPA_GQA = torch.torch_version.TorchVersion(torch.__version__) >= (2, 5)  # SDPA's `enable_gqa` argument


def _register_tree_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if TREE_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(TREE_ATTENTION, _tree_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(TREE_ATTENTION, sdpa_mask)  # unpacked calls get SDPA's mask


_PACKED_MASK = torch.ones(1, 1, 1, 1, dtype=torch.bool)
_IMPLEMENTATIONS = {"tree": TREE_ATTENTION, "flex": "flex_attention", "flash": "flash_attention_2"}


@contextlib.contextmanager
def packed_attention(model: torch.nn.Module, attention: str = "tree") -> Iterator[None]:
    """Run `model`'s attention through `attention` ("tree", "flex", "flash" or "dense") for the duration
    of a pass, forward and backward; the model's own implementation comes back afterwards."""
    if attention not in ATTENTIONS or attention == "auto":
        raise ValueError(f"attention: expected one of {ATTENTIONS[1:]} (resolve 'auto' first), got {attention!r}")
    if attention == "dense":
        yield
        return
    if attention == "tree":
        _register_tree_attention()
    config = unwrap(model).config
    before = config._attn_implementation
    config._attn_implementation = _IMPLEMENTATIONS[attention]
    try:
        yield
    finally:
        config._attn_implementation = before


def packed_hidden_states(model: torch.nn.Module, batch: PackedBatch, attention: str = "tree") -> Tensor:
    """The hidden states [M, H] that score `batch.labels`, inside `packed_attention(model, attention)`."""
    kwargs: dict = {}
    mask = None
    if attention == "tree":
        # the layout travels with the call (so recomputation under checkpointing sees it too); the mask is a
        # 4-D placeholder, which transformers passes through instead of building an [L, L] one
        kwargs["packed_batch"] = batch
        mask = _PACKED_MASK
    elif attention == "dense":
        mask = batch.dense_mask()
        if unwrap(model).config._attn_implementation == "eager":  # eager adds its mask to the scores
            mask = torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, torch.finfo(torch.float32).min)
    elif attention == "flex":
        mask = _block_mask(batch)
    elif attention == "flash" and batch.branched:
        raise ValueError("attention: 'flash' packs disjoint sequences only; this batch branches (use 'flex')")
    hidden = hidden_states(model, batch.input_ids, mask, position_ids=batch.position_ids, **kwargs)
    return hidden[0].index_select(0, batch.label_index)


def _block_mask(batch: PackedBatch):
    from torch.nn.attention.flex_attention import create_block_mask

    end = batch.subtree_end

    def ancestor_or_self(b, h, q, kv):
        return (kv <= q) & (q < end[kv])

    n = batch.num_tokens
    return create_block_mask(ancestor_or_self, None, None, n, n, device=batch.input_ids.device)
