"""The stages of a run and the state they share; `rftfast.pipeline.run` wires them in order.

    state.py      RunState (config, manifest, policy, data), Manifest, stage seeds, StopRequested
    data.py       records, tokenizer and initial policy; the examples that fit `model.max_length`
    warmup.py     easy-to-hard SFT
    iteration.py  deficiency → search → preference (or the extra-SFT ablation), once per iteration
    evaluate.py   held-out accuracy after the warm-up and after each iteration

A stage is a function of the `RunState`: it runs its body through `RunState.stage` (which skips it when the
manifest has it, seeds it, records it) and leaves its outputs on the state and under the run directory.
"""

from rftfast.stages.data import stage_data
from rftfast.stages.evaluate import stage_eval
from rftfast.stages.iteration import stage_iteration
from rftfast.stages.state import Manifest, RunState, StopRequested, stage_seed
from rftfast.stages.warmup import stage_warmup

__all__ = [
    "Manifest",
    "RunState",
    "StopRequested",
    "stage_data",
    "stage_eval",
    "stage_iteration",
    "stage_seed",
    "stage_warmup",
]
