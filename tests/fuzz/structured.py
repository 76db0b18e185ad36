"""The structured fuzzer of the ``.bin`` reader: inputs from ``_support/pickle_fuzz.py`` fed
to the ``bin`` target (``read_bin``) in child processes, so that a crash or a hang is caught.

    python tests/fuzz/structured.py [--runs N] [--seed S] [--batch B] [--save DIR]

Each child runs a batch of inputs and reports each one before and after it; a child that dies
(a signal: SIGSEGV) or says nothing for ``--timeout`` seconds (a hang) is reported with the
input it was running, and a new child goes on with the next one. Within a child, an input
fails when ``run_one`` raises anything but the documented errors, when its tracemalloc peak
exceeds 10 times the input's size plus :data:`BASELINE` (the file itself, read into memory,
counts), or when it takes more than ``--slow`` seconds of CPU time. The child's address
space is capped at what it uses after its imports plus 2 GiB, so that a runaway allocation is
a MemoryError here instead of a swapping machine. Failing inputs are written to ``--save``
(by default ``tests/fuzz/crashers/bin/``, which the suite replays) as they are found, and the
run exits 1.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the _support helpers

#: allowance above 10x the input's size, for a small input's fixed costs (paths, messages)
BASELINE = 256 * 1024


def child(seed: int, start: int, stop: int, slow: float) -> None:
    """Run inputs ``start`` to ``stop`` and report on stdout: ``run I``, then ``ok I`` or
    ``fail I WHY``."""
    import resource
    import tracemalloc

    from _support.fuzz_targets import run_one
    from _support.pickle_fuzz import make_input

    vm = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmSize:")
    )
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.RLIM_INFINITY))
    tracemalloc.start()
    out = sys.stdout
    for index in range(start, stop):
        data = make_input(seed, index)
        out.write(f"run {index}\n")
        out.flush()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        began = time.process_time()  # CPU: a loaded machine must not make inputs "slow"
        why = ""
        try:
            run_one("bin", data)
        except BaseException as exc:  # noqa: BLE001 - anything else is a finding
            why = f"raised {type(exc).__name__}: {str(exc)[:200]}"
        took = time.process_time() - began
        peak = tracemalloc.get_traced_memory()[1] - before
        if not why and peak > 10 * len(data) + BASELINE:
            why = f"allocated {peak} bytes for an input of {len(data)}"
        if not why and took > slow:
            why = f"took {took:.1f} s"
        out.write(f"fail {index} {why}\n" if why else f"ok {index}\n")
        out.flush()


def run(
    runs: int,
    seed: int = 0,
    batch: int = 2000,
    timeout: float = 30.0,
    slow: float = 5.0,
    start: int = 0,
    report: Callable[[int, str], None] | None = None,
) -> tuple[list[tuple[int, str]], int]:
    """Run inputs ``start`` to ``start + runs``; ``report(index, why)`` is called for each
    failure as it is found. Returns ``(failures as (index, why), inputs run)``."""
    failures: list[tuple[int, str]] = []

    def fail(number: int, why: str) -> None:
        failures.append((number, why))
        if report is not None:
            report(number, why)

    done = 0
    index = start
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while index < start + runs:
        stop = min(index + batch, start + runs)
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(seed), str(index), str(stop), str(slow)],
            stdout=subprocess.PIPE, text=True, env=env, bufsize=1,
        )  # fmt: skip
        current = None
        last = time.monotonic()
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                last = time.monotonic()
                word, _, rest = line.rstrip("\n").partition(" ")
                number_text, _, why = rest.partition(" ")
                if word not in ("run", "ok", "fail") or not number_text.isdigit():
                    continue  # something the code under test printed
                number = int(number_text)
                if word == "run":
                    current = number
                else:
                    current = None
                    done += 1
                    if word == "fail":
                        fail(number, why)
            elif time.monotonic() - last > timeout:
                proc.kill()
                if current is not None:
                    fail(current, f"hung for more than {timeout:.0f} s")
                    done += 1
                break
        code = proc.wait()
        if current is not None and code != 0 and (not failures or failures[-1][0] != current):
            fail(current, f"the child died: exit {code} (negative: a signal)")
            done += 1
        index = current + 1 if current is not None else stop
    return failures, done


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        seed, start, stop = map(int, sys.argv[2:5])
        child(seed, start, stop, float(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--start", type=int, default=0, help="the first input's number")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=30.0, help="a hang: seconds silent")
    parser.add_argument("--slow", type=float, default=5.0, help="an input slower fails")
    parser.add_argument("--save", type=Path, default=HERE / "crashers" / "bin")
    args = parser.parse_args()
    from _support.pickle_fuzz import make_input

    def report(index: int, why: str) -> None:
        args.save.mkdir(parents=True, exist_ok=True)
        name = args.save / f"structured-{args.seed}-{index}"
        name.write_bytes(make_input(args.seed, index))
        print(f"input {index} (saved as {name}): {why}", flush=True)

    began = time.monotonic()
    failures, done = run(
        args.runs, args.seed, args.batch, args.timeout, args.slow, args.start, report
    )
    took = time.monotonic() - began
    print(
        f"Done {done} runs (inputs {args.start} to {args.start + args.runs - 1} of seed "
        f"{args.seed}) in {took:.0f} s: {len(failures)} failing"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
