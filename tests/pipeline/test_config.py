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


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["search.roundz=3"], r"search.roundz: unknown key \(expected one of"),
        (["nope=1"], "nope: unknown key"),
        (["search.rounds=many"], "search.rounds: expected int, got 'many'"),
        (["search.rounds=2.5"], "search.rounds: expected int"),
        (["warmup.lr=fast"], "warmup.lr: expected float, got 'fast'"),
        (["extra_sft=yes please"], "extra_sft: expected true or false"),
        (["search.rule=ucb"], r"search.rule: expected one of \('uct', 'puct'\)"),
        (["preference.replay_loss=mse"], r"preference.replay_loss: expected one of \('nll', 'kl'\)"),
        (["data.levels=[1, x]"], r"data.levels\[1\]: expected int"),
        (["deficiency.ratio=0"], r"deficiency.ratio: expected in \(0, 1\], got 0.0"),
        (["search=3"], "search: expected a mapping"),
        (["search.samples=3"], "search.samples: unknown key"),  # the library's name: samples_per_expansion
        (["rounds"], "expected key.path=value"),
    ],
)
def test_bad_config_names_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


# Values that used to pass the load and fail hours later (or never), each refused at load with its key.
@pytest.mark.parametrize(
    "override,match",
    [
        ("preference.loss_type=nonsense", "preference.loss_type: unknown loss type 'nonsense'"),
        ("preference.loss_type=dpo", "preference.loss_type: 'dpo' is called 'sigmoid'"),
        ("preference.batch_size=0", "preference.batch_size: expected >= 1, got 0"),
        ("preference.lr=-1", "preference.lr: expected > 0"),
        ("preference.beta=.inf", "preference.beta: expected a finite number"),
        ("preference.epochs=0", "preference.epochs: expected > 0"),
        ("preference.replay_weight=0", "preference.replay_weight: expected > 0"),
        ("search.top_p=0", r"search.top_p: expected in \(0, 1\]"),
        ("search.leaves_per_tree=0", "search.leaves_per_tree: expected >= 1"),
        ("search.max_new_tokens=0", "search.max_new_tokens: expected >= 1"),
        ("search.temperature=.nan", "search.temperature: expected a finite number"),
        ("search.samples_per_expansion=0", "search.samples_per_expansion: expected >= 1, got 0"),
        ("search.rounds=0", "search.rounds: expected >= 1, got 0"),
        ("search.backup=max", r"search.backup: expected one of \('mean', 'sum'\)"),
        ("search.pairs.min_gap=-1", "search.pairs.min_gap: expected >= 0"),
        ("search.pairs.value=best", "search.pairs.value: expected one of"),
        ("search.seed=3", "search.seed: expected 0: the run seeds each search"),
        ("preference.label_smoothing=0.7", r"preference.label_smoothing: must lie in \[0, 0.5\)"),
        ("eval.batch_size=0", "eval.batch_size: expected >= 1"),
        ("model.vocab_size=7", "model.vocab_size: expected >= 262"),
        ("model.max_length=1", "model.max_length: expected >= 2"),
        ("model.num_heads=3", "model.num_heads: expected >= 1 and a divisor of model.hidden_size"),
        ("warmup.batch_size=0", "warmup.batch_size: expected >= 1"),
        ("warmup.epochs=0", "warmup.epochs: expected > 0"),
        ("deficiency.max_records=0", "deficiency.max_records: expected >= 1"),
        ("data.levels=[]", "data.levels: expected a non-empty list"),
        ("name=/abs", "name: expected a plain folder name"),
        ("name=../x", "name: expected a plain folder name"),
        ("name=..", "name: expected a plain folder name"),
        ("device=gpu", "device: expected 'cpu', 'cuda'"),
        ("train.lora_dropout=1", r"train.lora_dropout: expected in \[0, 1\)"),
    ],
)
def test_out_of_range_values_are_refused_at_load(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_sections_are_the_librarys_configs_with_the_runs_defaults():
    from rftfast.losses import ObjectiveParams
    from rftfast.mcts import PairConfig, SearchConfig

    cfg = load_config(None, ["search.rounds=3", "search.pairs.max_overlap=0.5", "preference.label_smoothing=0.1"])
    assert isinstance(cfg.search, SearchConfig) and isinstance(cfg.search.pairs, PairConfig)
    assert isinstance(cfg.preference, ObjectiveParams)
    # keys not given keep the default run's values, which are not all the library's
    assert (cfg.search.rounds, cfg.search.samples_per_expansion, cfg.search.max_depth) == (3, 3, 6)
    assert (cfg.search.max_new_tokens, cfg.search.top_p, cfg.search.ground_truth_chosen) == (24, 0.95, True)
    assert (cfg.search.pairs.min_gap, cfg.search.pairs.max_overlap) == (0.2, 0.5)
    assert cfg.preference.label_smoothing == 0.1 and cfg.preference.loss().objective.params.label_smoothing == 0.1


def test_vllm_backend_needs_vllm_before_any_work(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    assert main(["run", "--set", f"out_dir={tmp_path}", "--set", "search.backend=vllm"]) == 2
    assert "config error: search.backend: 'vllm' needs the vllm package" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before the run directory was made
    assert main(["run", "--set", f"out_dir={tmp_path}", "--set", "data.source=missing.jsonl"]) == 2
    assert "config error: data.source: no such file: missing.jsonl" in capsys.readouterr().err


def test_vocab_floor_is_the_tokenizers():
    from rftfast.config import MIN_VOCAB
    from rftfast.train.model import SPECIAL_TOKENS

    assert 256 + len(SPECIAL_TOKENS) == MIN_VOCAB


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


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml")))
def test_shipped_example_configs_load(path):
    cfg = load_config(path)
    assert cfg.model.path and cfg.device == "cuda"
