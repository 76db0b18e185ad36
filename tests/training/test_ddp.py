"""A 2-process data-parallel job on CPU (gloo), each rank running the real CLI."""

import torch

from _support.training import TINY, read_jsonl, run_two_ranks
from marginface.backbones import create_backbone


def test_two_process_gloo_job_trains_and_ranks_agree(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "2", "--output", str(out), "--batch-size", "4"]
    r0, r1 = run_two_ranks(tmp_path, args)
    # 32 images / (2 ranks x 4) = 4 steps per epoch; both ranks log the all-reduced loss
    assert [s for s, _ in r0["history"]] == list(range(1, 9))
    assert r0["history"] == r1["history"]
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in r0["history"])
    assert r0["params"].keys() == r1["params"].keys()
    for name, value in r0["params"].items():
        assert torch.equal(value, r1["params"][name]), name  # replicas stayed identical
    # it trained: the weights moved away from the seeded initialisation; rank 0 saved them
    torch.manual_seed(0)
    init = create_backbone("small_cnn", embedding_size=16, input_size=16).state_dict()
    saved = torch.load(out / "model.pt", weights_only=True)
    assert not torch.equal(saved["fc.weight"], init["fc.weight"])
    assert torch.equal(saved["fc.weight"], r0["params"]["fc.weight"])
    start = next(r for r in read_jsonl(out / "log.jsonl") if r.get("event") == "start")
    assert start["world_size"] == 2
