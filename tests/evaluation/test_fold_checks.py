"""The accuracy's folds: a pairs file's header (LFW's ``folds pairs-per-fold``) is followed, and a
header that disagrees with ``--folds`` or with the file, or a fold of one class only, is a
warning saying what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from marginface.cli import main
from marginface.data import open_pairs
from marginface.data.formats.verification import read_pairs_header
from marginface.evaluation import EmbedOptions
from marginface.evaluation.config import EvalConfig
from marginface.evaluation.evaluate import run_evaluation
from marginface.evaluation.folds import fold_warnings

QUIET = EmbedOptions(progress=False)


def _pairs_file(root: Path, header: str | None, genuine: int, impostor: int) -> Path:
    """An LFW-layout folder and a pairs.txt: ``genuine`` same-person lines, then ``impostor``
    lines (a list ordered by class, as a cut of the official file's first fold is)."""
    rng = np.random.default_rng(1)
    people = max(genuine, impostor) + 1
    for p in range(people):
        (root / f"P{p}").mkdir(parents=True)
        for i in (1, 2):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"P{p}" / f"P{p}_{i:04d}.png")
    lines = [header] if header is not None else []
    lines += [f"P{p}\t1\t2" for p in range(genuine)]
    lines += [f"P{p}\t1\tP{p + 1}\t2" for p in range(impostor)]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root / "pairs.txt"


def test_read_pairs_header(tmp_path):
    cases = {"10\t300": (10, 300), "1100": (1, 1100), "1 300": (1, 300), "A 1 2": None}
    for line, want in cases.items():
        (tmp_path / "p.txt").write_text(line + "\nA 1 2\n")
        assert read_pairs_header(tmp_path / "p.txt") == want


def test_one_fold_header_cut_in_order_warns_with_the_fix(tmp_path, saved_model):
    # the case: a subset whose header says 1 fold, genuine pairs first
    pairs_file = _pairs_file(tmp_path / "lfw", "1 30", 30, 30)
    result = run_evaluation(EvalConfig([saved_model], [str(pairs_file)]), QUIET)
    (warning,) = [w for w in result.warnings if "only genuine" in w]
    assert "fold(s) 1-5 only genuine pairs; fold(s) 6-10 only impostor pairs" in warning
    assert "in file order" in warning and "--fold-seed 0" in warning
    assert "official pairs file" in warning
    # shuffled by a seed: every fold holds both, no warning, the same scores
    shuffled = run_evaluation(EvalConfig([saved_model], [str(pairs_file)], fold_seed=0), QUIET)
    assert not [w for w in shuffled.warnings if "only genuine" in w or "only impostor" in w]
    name = result.pair_set_names[0]
    ckpt = result.checkpoints[0].name
    np.testing.assert_array_equal(result.scores[ckpt][name][0], shuffled.scores[ckpt][name][0])
    assert shuffled.config.fold_seed == 0


def test_a_header_of_several_folds_is_followed_unless_folds_are_given(tmp_path, saved_model):
    pairs_file = _pairs_file(tmp_path / "lfw", "3\t4", 4, 4)
    # interleave per fold as LFW does: fold k = 4 genuine then 4 impostor lines
    lines = pairs_file.read_text().splitlines()
    genuine, impostor = lines[1:5], lines[5:9]
    body = [x for k in range(3) for x in [genuine[k % 4]] * 4 + [impostor[k % 4]] * 4]
    pairs_file.write_text("\n".join([lines[0], *body]) + "\n")
    result = run_evaluation(EvalConfig([saved_model], [str(pairs_file)]), QUIET)
    name = result.pair_set_names[0]
    metrics = result.verification[result.checkpoints[0].name][name]
    assert result.folds == {name: 3} and len(metrics["fold_accuracies"]) == 3
    assert not result.warnings
    given = run_evaluation(EvalConfig([saved_model], [str(pairs_file)], n_folds=4), QUIET)
    assert any("its header says 3 folds, evaluated in --folds 4" in w for w in given.warnings)


def test_a_header_that_does_not_match_the_file(tmp_path):
    pairs = open_pairs(str(_pairs_file(tmp_path / "lfw", "2 5", 6, 6)), image_size=16)
    warnings = fold_warnings("lfw", pairs, folds=2)
    assert any("says 2 fold(s) of 5 genuine + 5 impostor pairs (20), the file holds 12" in w
               for w in warnings)  # fmt: skip


def test_the_cli_prints_the_fold_warning(tmp_path, saved_model, capsys):
    pairs_file = _pairs_file(tmp_path / "lfw", "1 10", 10, 10)
    code = main(["eval", "--checkpoint", str(saved_model), "--pairs", str(pairs_file),
                 "--output", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    printed = capsys.readouterr()
    out = printed.out + printed.err  # the result on stdout, warnings on stderr
    assert (
        code == 0
        and "marginface eval: warning: pair set lfw: of its 10 folds (in file order)" in out
    )
    assert "only genuine" in (tmp_path / "out" / "report.md").read_text()


def test_the_report_says_how_the_folds_were_cut():
    from marginface.evaluation.folds import folds_text

    assert folds_text({"lfw": 10}, n_folds=None, fold_seed=None) == "10 folds in order"
    assert folds_text({"lfw": 10, "sub": 3}, n_folds=10, fold_seed=None) == "10 folds in order"
    text = folds_text({"lfw": 10, "sub": 3}, n_folds=None, fold_seed=0)
    assert "per pair set: lfw 10, sub 3" in text and "shuffled by seed 0" in text
