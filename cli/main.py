"""The ``geosr`` command group.

Commands live one per module and are imported only when invoked, so ``geosr --help`` does not
import torch. Errors from the library (:class:`geosr.errors.GeosrError`) become one line on
stderr and exit code 1 (130/143 for interrupts); ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from geosr import __version__

# command name -> (module in geosr_cli, attribute)
COMMANDS: dict[str, tuple[str, str]] = {
    "upscale": ("upscale", "upscale"),
    "models": ("models_cmd", "models"),
    "info": ("info", "info"),
    "scale": ("scale", "scale"),
    "evaluate": ("evaluate", "evaluate"),
    "train": ("train", "train"),
    "plot": ("plot", "plot"),
    "benchmark": ("benchmark", "benchmark"),
    "qgis": ("qgis_cmd", "qgis"),
}


class LazyGroup(click.Group):
    """Imports a command's module only when the command is listed or run."""

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
        from geosr.errors import GeosrError

        try:
            return super().invoke(ctx)
        except GeosrError as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"geosr: error: {err}", err=True)
            ctx.exit(getattr(err, "exit_code", 1))
        except KeyboardInterrupt:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo("geosr: interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as err:  # a bug: still one line, the traceback with --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"geosr: internal error: {type(err).__name__}: {err} (rerun with "
                       "--debug for the traceback and report it)", err=True)
            ctx.exit(1)


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
