"""Measure a multi-frame model against single-image SR on held-out synthetic stacks.

For each dataset and each stack length T, runs ``geosr.evaluation.evaluate(..., frames=T)``
(the protocol of ``geosr evaluate --frames``: stacks from :mod:`geosr.train.stacks`, seed
``EVAL_SEED``) for the multi-frame model, the bundled single-image EDSR-baseline and bicubic,
so all three see the same LR target frame; writes a markdown table into
docs/multitemporal.md (between the ``multitemporal-table`` markers of its "Measurements"
section) and a plot (PSNR and SSIM vs T) into docs/img.

    python tools/multitemporal_table.py --weights runs/basicvsr_x4/final.safetensors \\
        --data runs/data/neon_val --data ../shared/data/bench/set14 --frames 1 3 5 7

``--model temporal-median`` (no weights) measures the classical baseline the same way.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- multitemporal-table:start -->"
END = "<!-- multitemporal-table:end -->"


def measure(*, model: str | None, weights: str | None, scale: int, datasets: list[Path],
            frames: list[int], limit: int | None = None, also: tuple[str, ...] = (),
            single_every_t: bool = False, reuse: list[dict[str, Any]] = (),
            log=lambda msg: None) -> dict[str, Any]:
    """Every (dataset, T, model) evaluation. Single-image models see the same target frame
    at every T (tests/train/test_stacks.py), so they are run at the first T only and their
    figures repeated, unless ``single_every_t``. ``reuse``: rows of an earlier run (same
    scale and stacks) taken instead of measuring those (dataset, T, model) again."""
    import torch

    from geosr.evaluation import evaluate
    from geosr.models.bundled import bundled_weights

    edsr = bundled_weights("edsr-baseline", scale=scale, bands=3)
    runs: list[dict[str, Any]] = []
    label = None
    for ds in datasets:
        for t in frames:
            entries = [("bicubic", "bicubic", None)]
            if edsr is not None:
                entries.append(("EDSR-baseline", "edsr-baseline", str(edsr)))
            if t != frames[0] and not single_every_t:
                for r in [r for r in runs if r["dataset"] == ds.name
                          and r["frames"] == frames[0] and r["model"] in
                          ("bicubic", "EDSR-baseline")]:
                    runs.append({**r, "frames": t, "seconds": 0.0, "repeated_from": frames[0]})
                entries = []
            entries += [(None, a, None) for a in also]
            entries.append((None, model, weights))
            for k, (name, m, w) in enumerate(entries):
                old = [r for r in reuse if (r["dataset"], r["frames"]) == (ds.name, t)
                       and r["model"] == (name or m)]
                if old and k < len(entries) - 1:
                    runs.append({**old[0], "reused": True})
                    continue
                t0 = time.perf_counter()
                r = evaluate(ds, model=m, scale=scale, weights=w, frames=t, limit=limit)
                name = name or f"{r['model']}" + (" (trained)" if w else "")
                if k == len(entries) - 1:  # the model measured
                    label = name
                runs.append({"dataset": ds.name, "frames": t, "model": name, "psnr": r["psnr"],
                             "ssim": r["ssim"], "n_images": r["n_images"],
                             "seconds": round(time.perf_counter() - t0, 1)})
                log(f"{ds.name} T={t} {name}: {r['psnr']:.3f} dB / {r['ssim']:.4f} "
                    f"({runs[-1]['seconds']} s)")
    return {"runs": runs, "scale": scale, "multi_frame": label, "weights": weights,
            "stack": r.get("stack"), "threads": torch.get_num_threads(),
            "machine": f"{platform.node()} ({os.cpu_count()} cores)",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per (dataset, T), PSNR / SSIM per model."""
    runs = result["runs"]
    models: list[str] = []
    for r in runs:
        if r["model"] not in models:
            models.append(r["model"])
    head = "| data | T | " + " | ".join(f"{m} PSNR / SSIM" for m in models) + " |"
    lines = [head, "|" + "---|" * (2 + len(models))]
    keys: list[tuple[str, int]] = []
    for r in runs:
        if (r["dataset"], r["frames"]) not in keys:
            keys.append((r["dataset"], r["frames"]))
    for ds, t in keys:
        cells = []
        for m in models:
            hit = [r for r in runs if (r["dataset"], r["frames"], r["model"]) == (ds, t, m)]
            cells.append(f"{hit[0]['psnr']:.2f} / {hit[0]['ssim']:.4f}" if hit else "–")
        n = next(r["n_images"] for r in runs if (r["dataset"], r["frames"]) == (ds, t))
        lines.append(f"| {ds} ({n}) | {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict[str, Any], png: Path) -> None:
    """PSNR and SSIM against T, one column per dataset (matplotlib Figure + Agg, as geosr.plot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = result["runs"]
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    models = list(dict.fromkeys(r["model"] for r in runs))
    fig = Figure(figsize=(4.2 * len(datasets), 6.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(datasets), squeeze=False)
    for j, ds in enumerate(datasets):
        for i, metric in enumerate(("psnr", "ssim")):
            ax = axes[i][j]
            for m in models:
                pts = sorted((r["frames"], r[metric]) for r in runs
                             if r["dataset"] == ds and r["model"] == m)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
            ax.set_xlabel("frames T")
            ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
            ax.set_xticks(sorted({r["frames"] for r in runs}))
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"{ds} x{result['scale']}", fontsize=10)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, facecolor="white")


def write_doc(doc: Path, block: str) -> None:
    """Replace the text between the markers (adding them under "## Measurements" if absent)."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Multi-temporal stacks\n"
    body = f"{START}\n{block}\n{END}"
    if START in text and END in text:
        a, b = text.index(START), text.index(END) + len(END)
        text = text[:a] + body + text[b:]
    elif "## Measurements" in text:
        text = text.replace("## Measurements", f"## Measurements\n\n{body}", 1)
    else:
        text = text.rstrip("\n") + f"\n\n## Measurements\n\n{body}\n"
    doc.write_text(text, encoding="utf-8")


def _reusable(path: Path, scale: int) -> list[dict[str, Any]]:
    """The rows of an earlier --json, checked to be of the same scale and stacks."""
    from geosr.train.stacks import StackOptions

    old = json.loads(path.read_text())
    if old.get("scale") != scale or old.get("stack") != StackOptions().to_dict():
        raise SystemExit(f"{path}: measured at x{old.get('scale')} with stacks "
                         f"{old.get('stack')}, not x{scale} with the defaults; measure again")
    return old["runs"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="multi-frame registry model (default: "
                    "the one --weights is for)")
    ap.add_argument("--weights", default=None, help="its trained weights")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--data", action="append", type=Path, required=True,
                    help="folder of HR images (repeatable)")
    ap.add_argument("--frames", type=int, nargs="+", default=[1, 3, 5, 7])
    ap.add_argument("--also", action="append", default=[],
                    help="another multi-frame model without weights, e.g. temporal-median")
    ap.add_argument("--single-every-t", action="store_true",
                    help="run the single-image models at every T too (same figures, slower)")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="--json of an earlier run: its baseline rows are taken, not re-measured")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images per set")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "multitemporal.md")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "multitemporal_psnr.png")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    ap.add_argument("--note", default="", help="a line placed under the table (e.g. training)")
    ap.add_argument("--no-doc", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    if args.model is None and args.weights is None:
        ap.error("give --model NAME and/or --weights FILE of a multi-frame model")
    t0 = time.perf_counter()
    res = measure(model=args.model, weights=args.weights, scale=args.scale, datasets=args.data,
                  frames=args.frames, limit=args.limit, also=tuple(args.also),
                  single_every_t=args.single_every_t,
                  reuse=_reusable(args.reuse, args.scale) if args.reuse else [],
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    md = table(res)
    wall = time.perf_counter() - t0
    foot = (f"\nMeasured {res['date']} on {res['machine']}, torch {res['threads']} thread(s), "
            f"{wall:.0f} s; stacks: `geosr evaluate --frames T` defaults "
            f"({json.dumps(res['stack'])}). Single-image models see the same target frame at "
            f"every T" + ("." if args.single_every_t else
                          f": measured at T = {args.frames[0]} and repeated."))
    if args.note:
        foot += f" {args.note}"
    rel = os.path.relpath(args.png, args.doc.parent)
    block = f"{md}\n{foot}\n\n![PSNR and SSIM against the number of frames]({rel})"
    print(md + "\n" + foot)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    if not args.no_doc:
        plot(res, args.png)
        write_doc(args.doc, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
