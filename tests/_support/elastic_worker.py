"""One worker of a torchrun job that dies once: ``python elastic_worker.py STEP -- TRAIN ARGS``.

On torchrun's first attempt (``TORCHELASTIC_RESTART_COUNT`` 0), rank 0 (the one that writes
the checkpoints) kills itself with SIGKILL right after optimizer step ``STEP`` (a worker lost
mid-epoch, as when a node fails); on the restart every rank trains normally. ``STEP`` 0: never
dies (the uninterrupted run).
"""

import os
import signal
import sys

import torch

import marginface.training as training
from marginface.cli import main


def run() -> int:
    die_at = int(sys.argv[1])
    argv = sys.argv[sys.argv.index("--") + 1 :]
    torch.set_num_threads(1)
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    train = training.train

    def train_and_maybe_die(config, **kw):
        def on_step(record):
            if die_at and first_attempt and record["step"] == die_at:
                os.kill(os.getpid(), signal.SIGKILL)

        kw["on_step"] = on_step  # called on rank 0 only
        return train(config, **kw)

    training.train = train_and_maybe_die
    return main(["train", *argv])


if __name__ == "__main__":
    sys.exit(run())
