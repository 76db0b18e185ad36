"""Issue 22, settings: YAML in --head-kwargs / --head-X / --config / demo --head-kwargs and
values of huge size stay one short error; no traceback escapes the command line's parser."""

import pytest

import marginface
from marginface.cli import main
from marginface.settings import MAX_DEPTH, load_settings
from marginface.text import short_repr


def alias_bomb() -> str:
    """Nested YAML aliases: 9 levels of 9 references each, 9^9 leaves from ~300 bytes."""
    parts = ["a: &a [x,x,x,x,x,x,x,x,x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        parts.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "{" + ", ".join(parts) + "}"


BOMB = alias_bomb()
DEEP = "[" * 3000 + "]" * 3000
DEEP_MAP = "{a: " * 3000 + "1" + "}" * 3000


def usage_error(capsys, argv):
    """argparse's usage error: exit 2, its last line one bounded error naming the flag."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err and len(err) < 5000
    return err.strip().splitlines()[-1]


def one_error(capsys, argv, code=2):
    got = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1, err
    assert err[0].startswith(f"marginface {argv[0]}: error: ") and len(err[0]) < 1000
    return err[0]


def test_alias_bomb_is_small():
    assert len(BOMB) < 400


@pytest.mark.parametrize(
    "text, message",
    [(BOMB, "aliases"), (DEEP, "nesting deeper than"), (DEEP_MAP, "nesting deeper than"),
     ("{1: 2}", "keys must be names"), ("{s: [}", "not valid YAML"),
     ("{[1]: 2}", "keys must be names")],
)  # fmt: skip
def test_load_settings_refuses_in_one_short_line(text, message):
    with pytest.raises(ValueError, match=message) as info:
        load_settings(text, "--head-kwargs")
    assert str(info.value).startswith("--head-kwargs: ") and len(str(info.value)) < 500


def test_load_settings_reads_what_settings_hold():
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_settings("{s: 64, m: [0.5, 1.0e-4], name: arc}", "x") == {
        "s": 64, "m": [0.5, 1e-4], "name": "arc"}  # fmt: skip
    assert load_settings(nested, "x") is not None


@pytest.mark.parametrize(
    "case, text, message",
    [("alias_bomb_314_bytes", BOMB, "aliases"), ("deep_3000", DEEP_MAP, "nesting deeper"),
     ("non_string_key", "{1: 2}", "keys must be names"),
     ("unclosed_list", "{s: [}", "not valid YAML")],
)  # fmt: skip
def test_train_head_kwargs_hostile(capsys, tmp_path, case, text, message):
    line = usage_error(capsys, ["train", "--data", "synthetic:4x4", "--head-kwargs", text,
                                "--output", str(tmp_path / "run")])  # fmt: skip
    assert line.startswith("marginface train: error: argument --head-kwargs: ")
    assert message in line and not (tmp_path / "run").exists()


def test_train_head_x_3000_deep(capsys, tmp_path):
    line = usage_error(capsys, ["train", "--head-s", DEEP, "--output", str(tmp_path / "r")])
    assert line.startswith("marginface train: error: argument --head-s: ")
    assert "nesting deeper" in line


@pytest.mark.parametrize(
    "case, text, message",
    [("alias_bomb_314_bytes", BOMB, "aliases"), ("deep_3000", DEEP, "nesting deeper"),
     ("non_string_key", "{1: 2}", "keys must be names"),
     ("unclosed_list", "{s: [}", "not valid YAML")],
)  # fmt: skip
def test_train_config_hostile(capsys, tmp_path, case, text, message):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    line = one_error(capsys, ["train", "--config", str(config), "--output", str(tmp_path / "r")])
    assert "config.yaml" in line and message in line and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "case, text, message",
    [("alias_bomb_314_bytes", BOMB, "aliases"), ("deep_3000", DEEP, "nesting deeper"),
     ("non_string_key", "{1: 2}", "keys must be names"),
     ("unclosed_list", "{s: [}", "not valid YAML")],
)  # fmt: skip
def test_demo_head_kwargs_hostile(capsys, tmp_path, case, text, message):
    line = one_error(capsys, ["demo", "--head-kwargs", text, "--output", str(tmp_path / "d")])
    assert "--head-kwargs" in line and message in line


def test_head_m_of_401_digits_cli(capsys, tmp_path):
    line = one_error(capsys, ["train", "--data", "synthetic:8x4", "--batch-size", "8",
                              "--head-m", "4" * 401, "--output", str(tmp_path / "r")])  # fmt: skip
    assert "hyperparameter m" in line and "finite" in line


def test_create_head_m_10_to_the_400():
    with pytest.raises(ValueError, match="hyperparameter m: must be a finite number") as info:
        marginface.create_head("arcface", 8, 4, m=10**400)
    assert len(str(info.value)) < 300


def test_a_type_callback_that_raises_anything_is_a_usage_error(capsys, monkeypatch):
    """Whatever a flag's conversion raises (here a RecursionError) is argparse's error naming
    the flag, never a traceback."""
    import marginface.training.config as config

    def deep(text):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(config, "parse_value", deep)
    line = usage_error(capsys, ["train", "--head-s", "x" * 10_000])
    assert "argument --head-s: " in line and "RecursionError" in line


def test_float_flag_of_a_huge_value_is_echoed_short(capsys):
    line = usage_error(capsys, ["train", "--lr", "x" * 100_000])
    assert line.startswith("marginface train: error: argument --lr: invalid float value 'xxx")


def test_short_repr_is_bounded():
    deep = []
    for _ in range(3000):
        deep = [deep]
    assert len(short_repr(deep)) < 300 and len(short_repr("x" * 10**6)) < 300
    assert "digits" in short_repr(10**400)


def test_model_json_nested_100000_deep_is_one_line(tmp_path):
    import torch

    from marginface.backbones.checkpoint import load_model

    torch.save({}, tmp_path / "model.pt")
    (tmp_path / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="model.json: not valid JSON \\(nested too deeply\\)"):
        load_model(tmp_path / "model.pt")


def test_log_lines_that_are_not_records_are_skipped(tmp_path):
    from marginface.training.logger import read_log, truncate_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n5\n' + "[" * 100_000 + "\n" + '{"step": 2}\n')
    assert read_log(log) == [{"step": 1}, {"step": 2}]
    assert truncate_log(log, 1) == [{"step": 1}]
