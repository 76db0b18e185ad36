"""The command line's error boundary: every failure becomes one line and an exit code.

Exit codes (also in docs/cli.md):

- 0: done.
- 1: the work ran but did not succeed (training diverged; no image could be aligned; verify
  printed a score without a verdict, the model having no threshold).
- 2: bad input, settings or output: a file, key or flag is named in the message (argparse's
  own usage errors are 2 as well).
- 3: an unexpected error (a bug in marginface or a library); ``--debug`` shows where.
- 130: interrupted (Ctrl-C); a training run saves a resumable checkpoint first.
"""

from __future__ import annotations

import os

OK, FAILED, BAD_INPUT, UNEXPECTED, INTERRUPTED = 0, 1, 2, 3, 130

#: exception types that mean "the input, settings or output are wrong", not a bug
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, MemoryError)


def debug_requested(argv: list[str]) -> bool:
    """``--debug`` on the command line (before a ``--``) or ``MARGINFACE_DEBUG=1``."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return "--debug" in head or os.environ.get("MARGINFACE_DEBUG", "") not in ("", "0")


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, with its type where the type says something the
    message does not (a MemoryError, a library's RuntimeError)."""
    text = str(exc).strip()
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: the cause is last
        text = text.splitlines()[-1].split(": ", 1)[-1]
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if isinstance(exc, MemoryError):
        return f"out of memory{': ' + text if text else ''}"
    if isinstance(exc, KeyError) and exc.args:
        text = repr(exc.args[0])
    if not text or not isinstance(exc, ValueError | OSError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    notes = [" ".join(n.split()) for n in getattr(exc, "__notes__", ())]
    return text + "".join(f" ({note})" for note in notes)


def exit_code(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, INPUT_ERRORS):
        return BAD_INPUT
    return UNEXPECTED
