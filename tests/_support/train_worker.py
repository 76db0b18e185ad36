"""One rank of the 2-process gloo test: runs the real CLI (``marginface train``) and saves what
this rank ended with (parameters, history) to ``OUT/rank{RANK}.pt``.

Usage (environment as torchrun sets it: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT): ``python train_worker.py OUT -- TRAIN ARGS`` (``_support.training.run_two_ranks``).
"""

import os
import sys
from pathlib import Path

import torch

import marginface.training as training
from marginface.cli import main


def run() -> int:
    out = Path(sys.argv[1])
    argv = sys.argv[sys.argv.index("--") + 1 :]
    torch.set_num_threads(1)
    train = training.train

    def train_and_save(config, **kw):
        result = train(config, **kw)
        params = {k: v.detach().clone() for k, v in result.backbone.named_parameters()}
        params.update({f"head.{k}": v.detach().clone() for k, v in result.head.named_parameters()})
        history = [(r["step"], r["loss"]) for r in result.history]
        blob = {"params": params, "history": history}
        if hasattr(result.head, "class_start"):  # PartialFC: this rank's shard
            blob["shard"] = (result.head.class_start, result.head.class_end)
            blob["head_weight"] = result.head.head.weight.detach().clone()
        torch.save(blob, out / f"rank{os.environ['RANK']}.pt")
        return result

    training.train = train_and_save
    return main(["train", *argv])


if __name__ == "__main__":
    sys.exit(run())
