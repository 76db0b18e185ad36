"""TrainConfig: validation with clear errors, YAML, merging, CLI value parsing."""

import pytest

from marginface.training.config import (
    TrainConfig,
    config_to_yaml,
    load_yaml,
    parse_value,
    resolve_config,
)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) lr_max; valid keys: data, "):
        TrainConfig.from_dict({"lr_max": 1})


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("batch_size", 0, "config batch_size: must be an int >= 1, got 0"),
        ("amp", "fp8", "config amp: must be one of none, bf16, fp16, got 'fp8'"),
        ("lr", -1.0, "config lr: must be a finite number >= 0"),
        ("warmup_epochs", 5.0, "must not exceed epochs 2"),
        ("device", "tpu", "config device"),
        ("grad_clip", -1.0, "config grad_clip"),
    ],
)
def test_bad_values_are_named(key, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{"epochs": 2, key: value})


def test_yaml_round_trip_and_number_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nbatch-size: 64\nhead_kwargs: {s: 30}\nval: [a.bin, b.bin]\n")
    cfg = resolve_config(load_yaml(path))
    assert cfg.lr == 1e-3 and cfg.batch_size == 64 and cfg.val == ["a.bin", "b.bin"]
    saved = tmp_path / "saved.yaml"
    saved.write_text(config_to_yaml(cfg))
    assert resolve_config(load_yaml(saved)) == cfg


def test_merge_order_and_kwargs_merge():
    cfg = resolve_config(
        {"lr": 0.1, "head_kwargs": {"s": 30, "m": 0.5}}, {"lr": 0.2, "head_kwargs": {"m": 0.3}}
    )
    assert cfg.lr == 0.2 and cfg.head_kwargs == {"s": 30, "m": 0.3}


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping"):
        load_yaml(bad)


def test_parse_value():
    assert parse_value("64") == 64 and parse_value("0.5") == 0.5 and parse_value("1e-4") == 1e-4
    assert parse_value("true") is True and parse_value("arcface") == "arcface"


def test_a_sample_rate_below_one_means_partial_fc():
    cfg = TrainConfig(sample_rate=0.5)
    assert cfg.partial_fc is True and "partial_fc: true" in config_to_yaml(cfg)
    assert TrainConfig(sample_rate=0.5, partial_fc=False).partial_fc is True  # implied
    assert TrainConfig().partial_fc is False and TrainConfig(partial_fc=True).partial_fc is True
