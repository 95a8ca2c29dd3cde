"""``geosr models``: the model zoo with scales, size, receptive field and bundled weights."""
from __future__ import annotations

import json

import click


def model_rows() -> list[dict]:
    """One row per registered model (parameter counts at x4 or the first scale, 3 bands)."""
    import torch

    from geosr.models import create_model, get_spec, list_models
    from geosr.models.bundled import list_bundled

    bundled: dict[str, list[dict]] = {}
    for b in list_bundled():
        bundled.setdefault(b["arch"], []).append({"scale": b["scale"], "bands": b["bands"]})
    rows = []
    for name in list_models():
        spec = get_spec(name)
        scale = 4 if 4 in spec.scales else spec.scales[0]
        bands = 3 if spec.kind == "network" else None
        params = rf = None
        try:
            # The meta device allocates nothing, so even 40 M-parameter networks list instantly.
            with torch.device("meta"):
                model = create_model(name, scale=scale, in_chans=bands)
            params = sum(p.numel() for p in model.parameters())
            rf = int(model.receptive_field)
        except Exception:  # a model that cannot be built on meta: build it for real
            model = create_model(name, scale=scale, in_chans=bands)
            params = sum(p.numel() for p in model.parameters())
            rf = int(model.receptive_field)
        rows.append({
            "name": name, "kind": spec.kind, "family": spec.family, "scales": list(spec.scales),
            "params": params, "params_at": {"scale": scale, "bands": bands},
            "receptive_field": rf, "paper": spec.paper, "description": spec.description,
            "bundled_weights": sorted(bundled.get(name, []),
                                      key=lambda d: (d["scale"], d["bands"])),
        })
    return rows


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "?"
    if n == 0:
        return "0"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def describe_weights(path: str) -> dict:
    """What a weights file is for: its geosr card, or the architecture read from its tensors."""
    from geosr.models.card import weights_sha256
    from geosr.models.checkpoint_io import describe_info, infer_architecture, read_checkpoint

    sd, card = read_checkpoint(path)
    out: dict = {"path": path, "sha256": weights_sha256(path), "tensors": len(sd),
                 "parameters": int(sum(t.numel() for t in sd.values()))}
    if card is not None:
        out.update(source="geosr card", card=card, arch=card["arch"], scale=card["scale"],
                   bands=card["bands"])
    else:
        info = infer_architecture(sd)
        out.update(source="inferred from tensor names and shapes", inferred=info,
                   arch=info.get("arch"), scale=info.get("scale"), bands=info.get("in_chans"),
                   description=describe_info(info))
    return out


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--describe", "describe", type=click.Path(dir_okay=False), default=None,
              metavar="WEIGHTS",
              help="Instead of the table, say which model, scale and bands a weights file "
                   "(geosr .safetensors or an official checkpoint) is for.")
def models(as_json: bool, describe: str | None) -> None:
    """List every registered model: scales, parameters (x4 or first scale, 3 bands), receptive
    field (LR pixels), family, paper, and which scales/bands have bundled weights."""
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
            for key in ("metrics", "training", "provenance"):
                if c.get(key):
                    text = json.dumps(c[key], default=str)
                    # one line each; --json prints the card in full
                    click.echo(f"  {key}: {text if len(text) <= 160 else text[:157] + '...'}")
        else:
            click.echo(f"no geosr card; looks like {d['description']}")
        if d.get("arch"):
            scale = f" --scale {d['scale']}" if d.get("scale") else ""
            click.echo(f"use: geosr upscale IN OUT --model {d['arch']}{scale} "
                       f"--weights {d['path']}")
        return
    rows = model_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ["name", "kind", "family", "scales", "params", "rf", "bundled", "paper"]
    table = [[r["name"], r["kind"], r["family"], ",".join(map(str, r["scales"])),
              _fmt_params(r["params"]), str(r["receptive_field"]),
              " ".join(f"x{b['scale']}/{b['bands']}b" for b in r["bundled_weights"]) or "-",
              r["paper"]] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())
    click.echo("\nparams at x4 (or the first scale) with 3 bands; rf = receptive field radius in "
               "LR pixels; networks without bundled weights need --weights PATH "
               "(see `geosr train`).")
