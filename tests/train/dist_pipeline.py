"""The smallest pipeline under `torchrun`:
`python tests/train/dist_pipeline.py OUT NAME [stop-after STAGE | resume]`."""

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rftfast.config import load_config  # noqa: E402
from rftfast.pipeline import StopRequested, run  # noqa: E402
from tests.pipeline.test_pipeline import SMALL  # noqa: E402


def main(out: str, name: str, *mode: str) -> None:
    cfg = load_config(None, [f"out_dir={out}", f"name={name}", *SMALL])
    with contextlib.suppress(StopRequested):  # the kill the resume test simulates
        run(cfg, resume=mode[:1] == ("resume",), stop_after=mode[1] if mode[:1] == ("stop-after",) else None)


if __name__ == "__main__":
    main(*sys.argv[1:])
