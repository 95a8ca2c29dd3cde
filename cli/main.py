"""The ``geosr`` command group.

Commands live one per module and are imported only when invoked, so ``geosr --help`` does not
import torch. Errors from the library (:class:`geosr.errors.GeosrError`) become one line on
stderr and exit code 1 (130/143 for interrupts); ``--debug`` shows the traceback instead.
A wrong command line (an unknown option, a value not among the choices, a missing argument)
is one such line too, with exit code 2 as for any Unix tool's usage error.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import time
import warnings

import click

from geosr import __version__

# command name -> (module in geosr_cli, attribute)
COMMANDS: dict[str, tuple[str, str]] = {
    "upscale": ("upscale", "upscale"),
    "upscale-stack": ("upscale_stack", "upscale_stack"),
    "models": ("models_cmd", "models"),
    "info": ("info", "info"),
    "scale": ("scale", "scale"),
    "evaluate": ("evaluate", "evaluate"),
    "train": ("train", "train"),
    "plot": ("plot", "plot"),
    "benchmark": ("benchmark", "benchmark"),
    "halo": ("halo", "halo"),
    "qgis": ("qgis_cmd", "qgis"),
    "weights": ("weights_cmd", "weights"),
    "check": ("check", "check"),
    "report": ("report", "report"),
    "pansharpen": ("pansharpen", "pansharpen"),
}


class OneLineUsageError(click.UsageError):
    """A usage error shown as geosr shows every error: one line, naming the help to read."""

    #: the command whose help to name when there is no context (an option conflict)
    command: str = "geosr"

    def show(self, file=None) -> None:
        cmd = self.ctx.command_path if self.ctx is not None else self.command
        click.echo(f"geosr: error: {_one_line(self.format_message())} (see '{cmd} --help')",
                   file=file, err=file is None)


def _one_line_usage(err: click.UsageError, command: str = "geosr") -> click.UsageError:
    """``err`` as one line; ``command`` names the help when the parser gave no context (an
    option missing its value). A bare ``geosr`` or group keeps click's help (no error)."""
    if isinstance(err, (OneLineUsageError, click.exceptions.NoArgsIsHelpError)):
        return err
    new = OneLineUsageError(err.format_message(), err.ctx)
    new.command = command
    new.exit_code = err.exit_code
    return new


class LazyGroup(click.Group):
    """Imports a command's module only when the command is listed or run."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:  # the group's own options (`geosr --bogus`)
            raise _one_line_usage(err) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, (mod, _) in COMMANDS.items()
                      if importlib.util.find_spec(f"geosr_cli.{mod}") is not None)

    def get_command(self, ctx: click.Context, cmd_name: str):
        if cmd_name not in COMMANDS:
            return None
        mod, attr = COMMANDS[cmd_name]
        if importlib.util.find_spec(f"geosr_cli.{mod}") is None:
            return None
        return getattr(importlib.import_module(f"geosr_cli.{mod}"), attr)

    def invoke(self, ctx: click.Context):
        from geosr.errors import GeosrError, OptionConflictError

        from .signals import terminate_as_interrupt

        debug = bool(ctx.params.get("debug"))
        if not debug:
            # libtiff prints some write errors (e.g. "No space left on device") straight to
            # stderr; geosr reports them itself as one OutputError line (see geosr.io).
            os.environ.setdefault("GEOSR_QUIET_LIBTIFF", "1")
        old_show = warnings.showwarning
        if not debug:
            _SHOWN.clear()  # once per command, also when one process runs several
            warnings.showwarning = _show_warning
        try:
            with terminate_as_interrupt():
                return super().invoke(ctx)
        except OptionConflictError as err:  # options that exclude each other: a usage error
            usage = OneLineUsageError(str(err))
            usage.command = " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))
            raise usage from None
        except click.UsageError as err:  # a sub-command's arguments: one line, exit code 2
            sub = " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))
            raise _one_line_usage(err, sub) from None
        except GeosrError as err:
            if _debug(ctx):
                raise
            code = getattr(err, "exit_code", 1)
            click.echo(f"geosr: error: {_one_line(err)}", err=True)
            if code > 128:
                _exit_soon(code)
            ctx.exit(code)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("geosr: interrupted", err=True)
            _exit_soon(130)
            ctx.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except MemoryError as err:
            if _debug(ctx):
                raise
            click.echo(f"geosr: error: out of memory ({_one_line(err) or 'MemoryError'}); use a "
                       "smaller --tile, --block or --batch-size", err=True)
            ctx.exit(1)
        except Exception as err:  # a bug: still one line, the traceback with --debug
            if _debug(ctx):
                raise
            if isinstance(err, BrokenPipeError) and _stdout_closed():
                # the reader of stdout went away (`geosr models | head`): as for any Unix
                # filter, no message; later writes (shutdown's flush) go nowhere. Another
                # broken pipe (a worker's) is an error like any other.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                ctx.exit(141)  # 128 + SIGPIPE, what a shell reports for such a filter
            click.echo(f"geosr: internal error: {type(err).__name__}: {_one_line(err)} (rerun "
                       "with --debug for the traceback and report it)", err=True)
            ctx.exit(1)
        finally:
            warnings.showwarning = old_show


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on its end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real stdout (CliRunner)
        return False


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))


def _one_line(err: BaseException | str) -> str:
    """The message on one line: GDAL and torch messages can span several."""
    return " ".join(ln.strip() for ln in str(err).splitlines() if ln.strip())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Each distinct warning once, on one line. rasterio's NotGeoreferencedWarning ("Dataset
    has no geotransform, ... identity matrix") is left out: it fires on every open of such a
    file, and geosr says what it means for the output itself (GeoreferencingWarning)."""
    if category.__name__ == "NotGeoreferencedWarning":
        return
    text = _one_line(message)
    if text in _SHOWN:
        return
    _SHOWN.add(text)
    click.echo(f"geosr: warning: {text}", err=True)


#: Warnings already shown by this process (:func:`_show_warning`).
_SHOWN: set[str] = set()


def _exit_soon(code: int, *, grace: float = 2.0, watch: float = 10.0) -> None:
    """Make sure an interrupted ``geosr`` process is gone within seconds.

    The output is already cleaned up when this runs, but interpreter shutdown joins worker
    threads, and one may be inside a forward pass that takes tens of seconds on a CPU. A daemon
    thread waits for the shutdown to begin and, ``grace`` seconds later, ends the process with
    ``code``. It does nothing inside a test runner (no real stderr, or no shutdown within
    ``watch`` seconds).
    """
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # click's CliRunner: not a real process exit
        return

    def watchdog() -> None:
        t0 = time.monotonic()
        shutdown_at = None
        while True:
            now = time.monotonic()
            if shutdown_at is None:
                if getattr(threading, "_SHUTTING_DOWN", False) or \
                        not threading.main_thread().is_alive():
                    shutdown_at = now
                elif now - t0 > watch:
                    return
            elif now - shutdown_at > grace:
                try:
                    sys.stderr.flush()
                    sys.stdout.flush()
                finally:
                    os._exit(code)
            time.sleep(0.05)

    threading.Thread(target=watchdog, name="geosr-exit-watchdog", daemon=True).start()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geosr")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Super-resolve GeoTIFFs with exact georeferencing."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main() -> None:  # pragma: no cover - console entry
    cli(prog_name="geosr")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
