"""`rftfast bench` runs the DPO-step benchmark script and passes its arguments through."""

from rftfast.cli import main


def test_bench_command_runs_the_quick_benchmark(capfd):
    assert main(["bench", "--quick", "--variants", "floor", "rftfast", "--repeats", "1", "--warmup", "0"]) == 0
    out = capfd.readouterr().out
    assert "| floor | " in out and "| rftfast | " in out and "N = 512 tokens" in out
