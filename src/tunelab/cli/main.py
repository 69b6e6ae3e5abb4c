"""The ``tunelab`` command: one module per command; exit 0 ok, 2 config error, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
import warnings

from tunelab import __version__


def build_parser() -> argparse.ArgumentParser:
    from tunelab.cli import inspect, run

    parser = argparse.ArgumentParser(prog="tunelab", description="Hyperparameter tuning, done right.")
    parser.add_argument("--version", action="version", version=f"tunelab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parser(subparsers)
    inspect.add_parsers(subparsers)
    for module_name in ("export", "evaluate", "report", "dashboard", "sync", "logs"):
        try:
            module = __import__(f"tunelab.cli.{module_name}", fromlist=["add_parser"])
        except ImportError:
            continue
        module.add_parser(subparsers)
    for command in subparsers.choices.values():
        # After the command as well as before it; SUPPRESS keeps a `--debug` given before it.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    from tunelab.api import TunelabWarning
    from tunelab.errors import ConfigError, TunelabError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _quiet_libraries()
    warnings.simplefilter("always", TunelabWarning)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except TunelabError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug, not a user mistake: say so briefly unless asked for more
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}\n(run with --debug for the traceback)", file=sys.stderr)
        return 1


def _show_warning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    print(f"warning: {message}", file=sys.stderr)


def _quiet_libraries() -> None:
    import logging

    logging.getLogger("optuna").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("ignore", module="optuna.samplers")


if __name__ == "__main__":
    sys.exit(main())
