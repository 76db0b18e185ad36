"""The one multi-process launcher of the tests: N local processes of a script with the
environment torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR 127.0.0.1, a free
MASTER_PORT), for gloo jobs on one machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: what a rank prints when the port taken by free_port() was grabbed before rank 0 bound it
_PORT_TAKEN = ("address already in use", "eaddrinuse")


def launch(
    script: str | Path, world_size: int, args: list[str], timeout: float = 120.0
) -> list[str]:
    """Run ``python script args`` as ranks 0..world_size-1; their outputs (stdout and stderr),
    or an AssertionError holding every rank's output if one fails or times out.

    free_port() closes its socket before rank 0 binds the port, so another process can take it
    in between: a run that failed only that way is started again on a new port (twice at most).
    """
    for attempt in range(3):
        try:
            return _launch_once(script, world_size, args, timeout)
        except AssertionError as failure:
            if attempt == 2 or not any(t in str(failure).lower() for t in _PORT_TAKEN):
                raise
    raise AssertionError("unreachable")


def _launch_once(script: str | Path, world_size: int, args: list[str], timeout: float):
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(world_size),
        "OMP_NUM_THREADS": "1",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *map(str, args)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world_size)
    ]
    outputs, failed = [], False
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            out, failed = f"timed out after {timeout} s", True
        outputs.append(out)
        failed |= p.returncode != 0
    if failed:
        raise AssertionError("\n".join(f"--- rank {r}:\n{o}" for r, o in enumerate(outputs)))
    return outputs
