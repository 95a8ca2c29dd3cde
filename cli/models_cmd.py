"""``geosr models``: the model zoo with scales, size, receptive field and bundled weights."""
from __future__ import annotations

import json

import click

from .options import bundled_by_name


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "?"
    if n == 0:
        return "0"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--describe", "describe", type=click.Path(dir_okay=False), default=None,
              metavar="WEIGHTS", callback=bundled_by_name,
              help="Instead of the table, say which model, scale, bands and configuration a "
                   "weights file (geosr .safetensors or an official checkpoint, or the name of "
                   "bundled weights, as for --weights) is for, and from which keys each was "
                   "read.")
def models(as_json: bool, describe: str | None) -> None:
    """List every registered model: scales, parameters (x4 or first scale, 3 bands), receptive
    field (LR pixels), family, paper, and which scales/bands have bundled weights."""
    from geosr.models.catalog import describe_weights, model_table

    if describe is not None:
        d = describe_weights(describe)
        if as_json:
            click.echo(json.dumps(d, indent=2, default=str))
            return
        click.echo(f"{d['path']}: {d['tensors']} tensors, {d['parameters']:,} parameters, "
                   f"sha256 {d['sha256'][:16]}...")
        if "card" in d:
            c = d["card"]
            click.echo(f"geosr weights for {c['arch']} x{c['scale']}, {c['bands']} bands, "
                       f"value range {c['value_range']}")
            if c.get("body_from"):  # the tensor count above includes the shared body's
                click.echo(f"  body shared with {c['body_from']['file']} (beside it, sha256 "
                           f"{c['body_from']['sha256'][:16]}...): this file holds only the "
                           "modules it replaces")
            for key in ("metrics", "training", "provenance"):
                if c.get(key):
                    text = json.dumps(c[key], default=str)
                    # one line each; --json prints the card in full
                    click.echo(f"  {key}: {text if len(text) <= 160 else text[:157] + '...'}")
        else:
            click.echo(f"no geosr card; looks like {d['description']}")
        for c in d["candidates"] if d["arch"] is None else ():
            click.echo(f"  candidate: {c['arch']} (layout {c['layout']})")
        for fact in ("arch", "scale", "bands", "args", "range"):  # from which keys each was read
            if fact in d["evidence"]:
                value = f"{d['args']}: " if fact == "args" else ""
                click.echo(f"  {fact} {value}{d['evidence'][fact]}")
        from geosr.models.layouts import get_layout

        refused = get_layout(d["layout"]).refused if d.get("layout") else ""
        if refused:
            click.echo(f"cannot run: {refused}")
        elif d.get("arch"):
            from geosr.models import get_spec

            fixed = f"--model {d['arch']}" + (f" --scale {d['scale']}" if d.get("scale") else "")
            need = "" if d.get("scale") else " --scale N"
            # multi-frame networks read a stack of rasters, not one
            stack = get_spec(d["arch"]).extra.get("multi_frame")
            cmd = "upscale-stack FRAME... OUT" if stack else "upscale IN OUT"
            click.echo(f"use: geosr {cmd} --weights {d['path']}{need} (the file "
                       f"gives {fixed})")
        elif d["candidates"]:
            picks = " or ".join(f"--model {c['arch']}" for c in d["candidates"])
            click.echo(f"use: geosr upscale IN OUT --weights {d['path']} with {picks}")
        return
    rows = model_table()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ["name", "kind", "family", "scales", "params", "rf", "input", "bundled", "paper"]
    table = [[r["name"], r["kind"], r["family"], ",".join(map(str, r["scales"])),
              _fmt_params(r["params"]), str(r["receptive_field"]), r["input"],
              " ".join(f"x{b['scale'] or 'any'}/{b['bands']}b" for b in r["bundled_weights"]) or "-",
              r["paper"]] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())
    named = [n for r in rows for n in r["named_weights"]]
    if named:
        click.echo(f"\nbundled weights that run only when named (--weights NAME): "
                   f"{', '.join(named)}")
    click.echo("\nparams at x4 (or the first scale) with 3 bands; rf = receptive field radius in "
               "LR pixels (over every frame for multi-frame models, whose input is a stack: "
               "geosr upscale-stack); networks without bundled weights need --weights PATH "
               "(see `geosr train`).")
