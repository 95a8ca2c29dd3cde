"""``geosr models``: the model zoo with scales, size, receptive field and bundled weights."""
from __future__ import annotations

import json

import click


def model_rows() -> list[dict]:
    """One row per registered model (parameter counts at x4 or the first scale, 3 bands)."""
    import torch

    from geosr.models import create_model, get_spec, list_models
    from geosr.models.loading import list_bundled

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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models(as_json: bool) -> None:
    """List every registered model: scales, parameters (x4 or first scale, 3 bands), receptive
    field (LR pixels), family, paper, and which scales/bands have bundled weights."""
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
