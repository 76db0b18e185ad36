"""The ``marginface`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the parsed
arguments and returning an exit code).  Modules are discovered automatically, so adding a
command means adding one file.  Heavy imports belong inside the command's ``func`` so that
``marginface --help`` stays fast.

:func:`main` is the one error boundary: whatever a command raises is printed as one line,
``marginface CMD: error: ...``, with the exit code of :mod:`marginface.cli._errors`;
``--debug`` (or ``MARGINFACE_DEBUG=1``) prints the traceback as well. Warnings are printed as
one line each, ``marginface CMD: warning: ...``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
import warnings

from marginface.cli._errors import (
    BAD_INPUT,
    INTERRUPTED,
    Parser,
    debug_requested,
    exit_code,
    one_line,
    set_command,
    warning_line,
)
from marginface.cli._use import HideAliases

_DEBUG_HELP = "on an error, also print the traceback (or set MARGINFACE_DEBUG=1)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="marginface",
        description="Margin-based softmax heads for face recognition: train, evaluate, use.",
        epilog="Exit codes: 0 done, 1 the work failed (e.g. training diverged; verify: no "
        "threshold, so no verdict), 2 bad input, "
        "settings or output (named in the message), 3 unexpected error, 130 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
        if not issubclass(command.formatter_class, HideAliases):
            command.formatter_class = type("Formatter", (HideAliases, command.formatter_class), {})
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenMP threads that wait for the others sleep instead of spinning: on a machine busy with
    # other work a spinning thread burns the time slice its descheduled partner needs, and a
    # 2-thread step ran 3-6x slower than with sleeping waits (docs/demo.md, shared machines).
    # Read when torch loads (after this line for every command); the arithmetic is the same.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _printable_streams()
    debug = debug_requested(argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the boundary, for parsing
        return _report(exc, "marginface", debug)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return BAD_INPUT
    prog = f"marginface {args.command}"
    set_command(prog)
    if "checkpoint" in vars(args) and not args.checkpoint:  # a command that needs a model
        from marginface.cli._model import MISSING_MODEL

        print(f"{prog}: error: {MISSING_MODEL}", file=sys.stderr)
        return BAD_INPUT
    format_warning = warnings.formatwarning
    if not debug:
        warnings.formatwarning = lambda message, *_, **__: warning_line(message, prog) + "\n"
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one error boundary
        return _report(exc, prog, debug)
    finally:
        warnings.formatwarning = format_warning


def _printable_streams() -> None:
    """Let stdout print any file name: characters its encoding lacks (a non-UTF-8 name's
    surrogate escapes, anything on an ASCII terminal) become backslash escapes instead of a
    UnicodeEncodeError after the work is done (stderr does this by default)."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - a stream that cannot
                pass


def _report(exc: BaseException, prog: str, debug: bool) -> int:
    """Print ``exc`` as one line (and its traceback with ``debug``); its exit code."""
    if debug:
        traceback.print_exc()
    code = exit_code(exc)
    if code == INTERRUPTED:
        print(f"{prog}: interrupted", file=sys.stderr)
    else:
        hint = " (unexpected: rerun with --debug for the traceback)" if code == 3 else ""
        print(f"{prog}: error: {one_line(exc)}{hint}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
