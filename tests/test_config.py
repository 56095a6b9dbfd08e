"""Layered config: override parsing, errors that name the dotted key, and the layer order
typed defaults < default.yaml < recipe yaml < --config files < --key=value overrides."""

from __future__ import annotations

import pytest
import yaml

from pitrec.config import (RETIRED_KEYS, ConfigError, builtin_layer, config_from_dict, load_config,
                           parse_overrides)
from pitrec.registry import SECTIONS
from pitrec.config_sections import TrainConfig


def test_parse_overrides_values_are_yaml():
    out = parse_overrides(["--train.lr=0.01", "eval.ks=[5, 10]", "--run.progress=false", "data.path=a/b.csv",
                           "data.time_col=", "run.device=cuda:1"])
    assert out == {"train": {"lr": 0.01}, "eval": {"ks": [5, 10]}, "run": {"progress": False, "device": "cuda:1"},
                   "data": {"path": "a/b.csv", "time_col": ""}}


@pytest.mark.parametrize("arg, words", [
    ("train.lr", "not of the form --section.key=value"),
    ("--lr=0.1", "must name a section and a field"),
    ("train.lr=[1", "not valid YAML"),
])
def test_bad_override_syntax(arg, words):
    with pytest.raises(ConfigError, match=words):
        parse_overrides([arg])


def test_overrides_reach_typed_sections():
    cfg = load_config(overrides=["--train.lr=0.01", "--eval.ks=[20,5,10,5]", "--run.progress=false"])
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.lr, float)
    assert cfg.eval.ks == [5, 10, 20] and cfg.run.progress is False
    assert cfg.get("train.lr") == 0.01
    # YAML reads "1e-3" as a string; the typed section still takes it as the number it means
    assert load_config(overrides=["train.lr=1e-3"]).train.lr == 0.001


@pytest.mark.parametrize("override, words", [
    ("train.lrr=0.1", "train.lrr: Extra inputs are not permitted"),
    ("trian.lr=0.1", "unknown section(s) ['trian'] (keys ['trian.lr'])"),
    ("train.lr=fast", "train.lr: Input should be a valid number"),
    ("train.lr=-1", "train.lr: Input should be greater than 0"),
    ("eval.ks=[0, 5]", "eval.ks: Value error, ks must be a non-empty list of positive integers"),
    ("eval.valid_metric=ndcg@50", "valid_metric 'ndcg@50' must be recall@K or ndcg@K with K in ks"),
    ("eval.accuracy_metric=mrr@10", "accuracy_metric 'mrr@10' must be recall@K or ndcg@K with K in ks"),
    ("data.min_user_interactions=2", "data.min_user_interactions: Input should be greater than or equal to 3"),
    ("data.format=excel", "data.format: Input should be"),
])
def test_errors_name_the_dotted_key(override, words):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=[override])
    assert words in str(exc.value)


def test_layer_order(tmp_path):
    recipe = builtin_layer("sasrec")
    recipe_epochs = recipe["train"]["epochs"]
    assert recipe_epochs != TrainConfig().epochs  # otherwise this test could not tell the layers apart
    assert load_config().train.epochs == TrainConfig().epochs  # typed default (default.yaml is silent)
    assert load_config().eval.ks == builtin_layer("default")["eval"]["ks"]
    assert load_config("sasrec").train.epochs == recipe_epochs  # recipe > defaults
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train: {epochs: 7, lr: 0.5}\neval: {ks: [1, 10]}\n")
    second.write_text("train: {lr: 0.25}\n")
    cfg = load_config("sasrec", files=[first, second])
    assert (cfg.train.epochs, cfg.train.lr, cfg.eval.ks) == (7, 0.25, [1, 10])  # files > recipe, later file wins
    assert cfg.train.batch_size == recipe["train"]["batch_size"]  # untouched keys keep the recipe's value
    cfg = load_config("sasrec", files=[first, second], overrides=["train.epochs=9"])
    assert (cfg.train.epochs, cfg.train.lr) == (9, 0.25)  # override > files


def test_config_files_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(files=[tmp_path / "missing.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(files=[bad])
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(files=[bad])
    bad.write_text("train: 3\n")
    with pytest.raises(ConfigError, match="section 'train' must be a mapping"):
        load_config(files=[bad])


def test_resolved_config_round_trips_and_is_read_only():
    cfg = load_config("sasrec", overrides=["train.lr=0.003"])
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(AttributeError, match="read-only"):
        cfg.train = None
    changed = cfg.with_overrides(["train.lr=0.1"])
    assert changed.train.lr == 0.1 and cfg.train.lr == 0.003
    with pytest.raises(AttributeError, match="no section 'nope'"):
        cfg.nope


def test_a_retired_key_at_its_neutral_value_loads_as_if_absent(caplog):
    saved = load_config("pit").to_dict()
    for dotted, retired in RETIRED_KEYS.items():
        section, _, key = dotted.partition(".")
        old = {**saved, section: {**saved[section], key: retired.neutral}}
        with caplog.at_level("INFO", logger="pitrec.config"):
            assert config_from_dict(old, source="run/config.yaml").to_dict() == saved
        assert f"ignoring retired key {dotted}" in caplog.text
        assert key in old[section]  # the caller's dict is not modified


def test_a_retired_key_at_another_value_is_an_error_naming_it():
    saved = load_config("pit").to_dict()
    for dotted in RETIRED_KEYS:
        section, _, key = dotted.partition(".")
        old = {**saved, section: {**saved[section], key: 2}}
        with pytest.raises(ConfigError, match=rf"run/config.yaml: {dotted}=2 is no longer supported"):
            config_from_dict(old, source="run/config.yaml")


def test_retired_keys_are_not_live_fields_and_unknown_keys_still_fail():
    for dotted in RETIRED_KEYS:
        section, _, key = dotted.partition(".")
        assert key not in SECTIONS.get(section).model_fields
    saved = load_config("pit").to_dict()
    with pytest.raises(ConfigError, match="pit.expand_first_levels: Extra inputs are not permitted"):
        config_from_dict({**saved, "pit": {**saved["pit"], "expand_first_levels": 0}})
