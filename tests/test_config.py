"""Config: YAML and --set overrides; unknown keys and bad values stop with the key path."""

from pathlib import Path

import pytest

from rftfast.cli import main
from rftfast.config import ConfigError, RunConfig, load_config


def test_defaults_yaml_and_overrides(tmp_path):
    assert load_config() == RunConfig()
    path = tmp_path / "run.yaml"
    path.write_text("name: mine\nsearch:\n  rounds: 8\n  rule: puct\nwarmup:\n  lr: 1\n")
    cfg = load_config(path, ["search.rounds=3", "preference.loss_type=simpo", "data.levels=[1, 2]"])
    assert cfg.name == "mine" and cfg.search.rounds == 3 and cfg.search.rule == "puct"
    assert cfg.warmup.lr == 1.0 and isinstance(cfg.warmup.lr, float)  # ints widen to floats
    assert cfg.preference.loss_type == "simpo" and cfg.data.levels == [1, 2]
    assert load_config(None, ["warmup.lr=1e-3"]).warmup.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string
    assert cfg.model.path is None and load_config(None, ["model.path=/x"]).model.path == "/x"


@pytest.mark.parametrize("overrides,match", [
    (["search.roundz=3"], r"search.roundz: unknown key \(expected one of"),
    (["nope=1"], "nope: unknown key"),
    (["search.rounds=many"], "search.rounds: expected int, got 'many'"),
    (["search.rounds=2.5"], "search.rounds: expected int"),
    (["warmup.lr=fast"], "warmup.lr: expected float, got 'fast'"),
    (["extra_sft=yes please"], "extra_sft: expected true or false"),
    (["search.rule=ucb"], r"search.rule: expected one of \('uct', 'puct'\)"),
    (["data.levels=[1, x]"], r"data.levels\[1\]: expected int"),
    (["deficiency.ratio=0"], "deficiency.ratio: value out of range"),
    (["search=3"], "search: expected a mapping"),
    (["rounds"], "expected key.path=value"),
])
def test_bad_config_names_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(path)


def test_run_command_reports_config_errors(capsys):
    assert main(["run", "--set", "search.rounds=many"]) == 2
    assert "config error: search.rounds: expected int" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml")))
def test_shipped_example_configs_load(path):
    cfg = load_config(path)
    assert cfg.model.path and cfg.device == "cuda"
