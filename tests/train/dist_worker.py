"""One SFT run and one preference run on a tiny model, under `torchrun` or in one process.

`python tests/train/dist_worker.py OUT PARALLEL` writes OUT/result.pt (losses and final weights of both runs)
from rank 0; tests/train/test_distributed.py compares two processes against one.
"""

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rftfast import distributed  # noqa: E402
from rftfast.config import PreferenceConfig, TrainConfig, WarmupConfig  # noqa: E402
from rftfast.data.chat import render_example  # noqa: E402
from rftfast.data.toolworld import generate  # noqa: E402
from rftfast.train.preference import train_preference  # noqa: E402
from rftfast.train.sft import make_schedule, train_sft  # noqa: E402
from tests.support.same_update import sgd  # noqa: E402
from tests.support.tiny import tiny_llama, tiny_tokenizer  # noqa: E402
from tests.support.toy_pairs import reversed_pairs  # noqa: E402


def main(out: Path, parallel: str) -> None:
    torch.optim.AdamW = sgd  # the loops build their optimiser by this name; tests/support/same_update.py says why
    distributed.init("cpu")
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    examples = [render_example(r, tok, use_chat_template=False) for r in generate(16, seed=7)]
    model = tiny_llama(len(tok), seed=2)
    train = TrainConfig(parallel=parallel, gradient_accumulation=2)

    sft_model = copy.deepcopy(model)
    cfg = WarmupConfig(epochs=1.0, batch_size=8, lr=0.5, buckets=1, warmup_steps=1, replay=0.0)
    sft_losses = train_sft(
        sft_model,
        tok,
        make_schedule(examples, [0.0] * 16, cfg, 0),
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        warmup_steps=cfg.warmup_steps,
        length_group=cfg.length_group,
        seed=0,
        train=train,
    )

    pairs = reversed_pairs(examples[:8])
    pref_model = copy.deepcopy(model)
    pcfg = PreferenceConfig(loss_type="sigmoid", nll_weight=0.0, epochs=2.0, batch_size=8, lr=0.5)
    history = train_preference(pref_model, tok, pairs, pcfg, seed=0, train=train)

    if distributed.is_main():
        torch.save(
            {
                "initial": model.state_dict(),
                "sft_losses": sft_losses,
                "sft": sft_model.state_dict(),
                "pref_losses": [h["loss"] for h in history],
                "pref": pref_model.state_dict(),
                "world": distributed.world_size(),
            },
            out / "result.pt",
        )
    distributed.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
