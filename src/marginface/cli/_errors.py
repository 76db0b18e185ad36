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

import argparse
import os
import sys

from marginface.text import cut, printable, short_repr

OK, FAILED, BAD_INPUT, UNEXPECTED, INTERRUPTED = 0, 1, 2, 3, 130

#: the most characters of one error line (messages echo values through
#: :func:`marginface.text.short_repr`; this bounds whatever else a library put in its message)
MAX_LINE = 2000

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
    return cut(text + "".join(f" ({note})" for note in notes), MAX_LINE)


#: the command being run (``marginface CMD``), set by :func:`marginface.cli.main`
_prog = ["marginface"]


def set_command(prog: str) -> None:
    """Name the command that warnings and errors are printed for."""
    _prog[0] = prog


def warning_line(message: object, prog: str | None = None) -> str:
    """``marginface CMD: warning: MESSAGE``: one line, printable on any terminal (a file
    name's undecodable bytes escaped), bounded in length."""
    text = " ".join(str(message).split())
    return f"{prog or _prog[0]}: warning: {printable(text, MAX_LINE)}"


def print_warning(message: object) -> None:
    """Print one warning line (:func:`warning_line`) on stderr: the one way every command
    warns, and how Python warnings are shown by :func:`marginface.cli.main`."""
    print(warning_line(message), file=sys.stderr, flush=True)


def exit_code(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, INPUT_ERRORS):
        return BAD_INPUT
    return UNEXPECTED


class Parser(argparse.ArgumentParser):
    """The command line's parsers (sub-commands inherit the class): a flag's ``type=``
    callback runs inside the error boundary. Whatever it raises (a ValueError, a
    RecursionError, an OverflowError) becomes argparse's usage error naming the flag, exit 2,
    with the value echoed by :func:`~marginface.text.short_repr` (argparse echoes it whole)."""

    def _get_value(self, action, arg_string):  # type: ignore[override]
        convert = self._registry_get("type", action.type, action.type)
        if not callable(convert):
            return super()._get_value(action, arg_string)
        try:
            return convert(arg_string)
        except argparse.ArgumentTypeError as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001 - every failure of a conversion is bad input
            if convert in (int, float) and isinstance(exc, ValueError | TypeError):
                message = f"invalid {convert.__name__} value {short_repr(arg_string)}"
            else:
                message = f"{short_repr(arg_string)}: {one_line(exc)}"
        raise argparse.ArgumentError(action, cut(message, MAX_LINE))

    def error(self, message: str):  # type: ignore[override]
        super().error(cut(" ".join(message.split()), MAX_LINE))
