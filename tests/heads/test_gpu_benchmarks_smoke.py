"""The GPU benchmarks' code runs (``--smoke``: CPU, tiny sizes, the kernel under Triton's
interpreter) and, without CUDA, their real runs stop with a one-line message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )


def test_heads_gpu_smoke(tmp_path):
    pytest.importorskip("triton")
    out = _run("benchmarks/heads_gpu.py", "--smoke", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    timed = {(r["loss_kind"], r["dtype"], r["name"]): r for r in rows if "time_ms" in r}
    for kind in ("arcface", "softmax"):
        for dtype in ("fp32", "bf16"):
            assert {"dense", "triton"} <= {k[2] for k in timed if k[:2] == (kind, dtype)}
        dense, kernel = timed[kind, "fp32", "dense"]["loss"], timed[kind, "fp32", "triton"]["loss"]
        assert abs(kernel - dense) <= 1e-4 * abs(dense)  # the same loss, float32
    assert {r["name"] for r in rows if "skipped" in r} == {"compiled", "cce", "liger"}


def test_train_throughput_smoke(tmp_path):
    out = _run(
        "benchmarks/train_throughput.py", "--smoke", "--backbones", "small_cnn", "--amp", "none",
        "--setups", "plain", "pfc", "--sample-rates", "0.2", "--json", str(tmp_path / "t.json"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [(r["setup"], r["sample_rate"]) for r in rows] == [("plain", None), ("pfc", 0.2)]
    assert all(r["images_per_s"]["none"] > 0 for r in rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_without_cuda_the_real_runs_say_so():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    heads = _run("benchmarks/heads_gpu.py", env=env)
    assert heads.returncode != 0
    assert heads.stderr.strip().splitlines() == [
        "benchmarks/heads_gpu.py measures GPU time and memory and needs CUDA "
        "(torch.cuda.is_available() is False here); --smoke runs the same code on the CPU"
    ]
    train = _run("benchmarks/train_throughput.py", "--device", "cuda", env=env)
    assert train.returncode != 0 and "CUDA is not available here" in train.stderr
    assert len(train.stderr.strip().splitlines()) == 1
