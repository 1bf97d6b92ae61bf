"""`rftfast compare` on a tiny config: three arms, one shared warm-up, compute matched and accounted."""

import json

import pytest
import torch

from rftfast.cli import main
from rftfast.config import load_config
from rftfast.train.compute import count_compute
from tests.support.tiny import tiny_llama
from tests.support.tiny_run import SMALL


def test_compute_counts_every_position_a_pass_computes():
    model = tiny_llama(300)
    with count_compute(model) as compute:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, 5, dtype=torch.long))  # 10 positions scored
        model.train()
        model(torch.zeros(3, 4, dtype=torch.long)).logits.sum().backward()  # 12 positions trained
        with compute.pause():
            model(torch.zeros(1, 7, dtype=torch.long))  # not counted
    assert compute.to_json() == {"inference_tokens": 10, "training_tokens": 12, "token_passes": 10 + 3 * 12}
    model(torch.zeros(1, 3, dtype=torch.long))  # after the context: the hook is gone
    assert compute.inference_tokens + compute.training_tokens == 22


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "--seeds", "3", "--set", f"out_dir={out}", *(f"--set={s}" for s in SMALL)]) == 0
    return out / "default-compare"


def test_three_arms_share_the_warmup_and_match_the_compute(compared):
    result = json.loads((compared / "compare.json").read_text())
    rows = {r["arm"]: r for r in result["rows"]}
    assert set(rows) == {"iterations", "sft_on_deficient", "longer_warmup"} and result["seeds"] == [3]

    def stages(arm):
        return json.loads((compared / f"{arm}-s3" / "manifest.json").read_text())["stages"]

    iterations, sft, longer = stages("iterations"), stages("sft_on_deficient"), stages("longer_warmup")
    # The SFT arm resumed from the first arm's warm-up: the same stage record, the same held-out answers.
    assert sft["warmup"] == iterations["warmup"] and sft["warmup/eval"] == iterations["warmup/eval"]
    assert "iter_1/extra_sft" in sft and "iter_1/search" not in sft
    # It trained on about as many positions as the preference stage (padding included, as counted).
    preference = iterations["iter_1/preference"]["compute"]["training_tokens"]
    assert 0.5 < sft["iter_1/extra_sft"]["compute"]["training_tokens"] / preference < 2.0
    # The longer warm-up spent about the first arm's warm-up and iteration compute together.
    spent = sum(
        s["compute"]["token_passes"] for name, s in iterations.items() if name != "data" and not name.endswith("/eval")
    )
    assert 0.6 < longer["warmup"]["compute"]["token_passes"] / spent < 1.6
    assert not any(name.startswith("iter_") for name in longer)
    # Each row's compute is its own run's, the evaluations excluded; the gain is over the shared warm-up.
    assert rows["iterations"]["token_passes"] == spent
    for row in rows.values():
        assert row["warmup_accuracy"] == iterations["warmup/eval"]["accuracy"]
    table = (compared / "compare.md").read_text()
    assert table.count("| iterations |") == 1 and "**longer_warmup, mean**" in table


def test_a_comparison_started_again_continues_and_bad_arms_are_refused(compared, tmp_path):
    before = (compared / "iterations-s3" / "manifest.json").read_text()
    out = compared.parent
    assert main(["compare", "--seeds", "3", "--set", f"out_dir={out}", *(f"--set={s}" for s in SMALL)]) == 0
    assert (compared / "iterations-s3" / "manifest.json").read_text() == before  # nothing redone
    from rftfast.compare import compare

    with pytest.raises(ValueError, match="arms"):
        compare(load_config(None, SMALL), [0], ["sft_on_deficient"])
    with pytest.raises(ValueError, match="at least one iteration"):
        compare(load_config(None, [*SMALL, "iterations=0"]), [0])


def test_the_sft_arm_budgets_its_batches_padded_as_the_compute_counts_them():
    from types import SimpleNamespace

    from rftfast.stages.iteration import padded_batch_positions

    def examples(*lengths):
        return [SimpleNamespace(input_ids=[0] * n) for n in lengths]

    assert padded_batch_positions(examples(10, 10, 10, 10, 10), 4, seed=0) == 40
    # One long example among short ones: every batch that draws it is padded to it. 4 of 8 are drawn, so half
    # the batches hold it: 4 * (100 + 10) / 2 = 220 positions, where the mean length says 4 * 21.25 = 85.
    assert padded_batch_positions(examples(*[10] * 7, 100), 4, seed=0) == pytest.approx(220, rel=0.15)
    # Fewer examples than rows: they are drawn again, and a batch of four holds the 9 unless all four are the 5.
    assert padded_batch_positions(examples(5, 9), 4, seed=0) == pytest.approx(4 * (9 * 15 + 5) / 16, rel=0.05)
