"""The KV pool: every layer's keys and values, cut into the blocks the prefix cache hands out.

One tensor of shape ``[num_layers, 2, num_blocks, block_size, kv_heads, head_dim]`` holds it all, so that reading
or writing a sequence touches every layer in one indexing operation; ``keys[layer]`` and ``values[layer]`` are
the per-layer ``[num_blocks, block_size, kv_heads, head_dim]`` views. Block index i of a sequence holds its
positions [i * block_size, (i + 1) * block_size) (the block ids come from `PrefixCache`).

Sequences move in and out in the layout transformers' caches use, a list over layers of ``(keys, values)``, each
``[batch, kv_heads, seq_len, head_dim]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

LayerKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [batch, kv_heads, seq, head_dim]


class KVPool:
    def __init__(
        self,
        num_layers: int,
        num_blocks: int,
        block_size: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_layers, self.num_blocks, self.block_size = num_layers, num_blocks, block_size
        self.storage = torch.zeros(
            num_layers, 2, num_blocks, block_size, kv_heads, head_dim, dtype=dtype, device=device
        )

    @classmethod
    def like(cls, kv: LayerKV, num_blocks: int, block_size: int) -> KVPool:
        """A pool shaped for the layers, heads, dtype and device of `kv`."""
        keys = kv[0][0]
        return cls(len(kv), num_blocks, block_size, keys.shape[1], keys.shape[3], keys.dtype, keys.device)

    @property
    def keys(self) -> torch.Tensor:
        return self.storage[:, 0]

    @property
    def values(self) -> torch.Tensor:
        return self.storage[:, 1]

    def nbytes(self) -> int:
        return self.storage.numel() * self.storage.element_size()

    def _positions(self, block_ids: Sequence[int], start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(block, offset) of each position in [start, end) of a sequence laid out in `block_ids`."""
        positions = torch.arange(start, end, device=self.storage.device)
        table = torch.as_tensor(list(block_ids), dtype=torch.long, device=self.storage.device)
        return table[positions // self.block_size], positions % self.block_size

    def read(self, block_ids: Sequence[int], length: int) -> LayerKV:
        """Positions [0, length) of the sequence in `block_ids`, as per-layer ``[1, kv_heads, length, head_dim]``."""
        blocks, offsets = self._positions(block_ids, 0, length)
        gathered = self.storage[:, :, blocks, offsets]  # [layers, 2, length, kv_heads, head_dim]
        gathered = gathered.transpose(2, 3).unsqueeze(2)  # [layers, 2, 1, kv_heads, length, head_dim]
        return [(gathered[layer, 0], gathered[layer, 1]) for layer in range(self.num_layers)]

    def write(self, block_ids: Sequence[int], kv: LayerKV, start: int, end: int, row: int = 0) -> None:
        """Store positions [start, end) of row `row` of `kv` into the sequence laid out in `block_ids`."""
        if end <= start:
            return
        blocks, offsets = self._positions(block_ids, start, end)
        source = torch.stack([torch.stack((k[row, :, start:end], v[row, :, start:end])) for k, v in kv])
        self.storage[:, :, blocks, offsets] = source.transpose(2, 3).to(self.storage.dtype)

    def copy(self, src_block: int, dst_block: int, n_tokens: int) -> None:
        """Apply a copy-on-write from the prefix cache: positions [0, n_tokens) of src_block into dst_block."""
        self.storage[:, :, dst_block, :n_tokens] = self.storage[:, :, src_block, :n_tokens]
