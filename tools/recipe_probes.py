"""Short comparable training probes (issue #26): which recipe gains most per step?

Each probe fine-tunes the same starting weights for the same number of steps on the same data
with one thing changed from ``base`` (batch/patch at equal pixels, learning rate, loss, EMA,
data mix), then is scored on Set5, Set14 and the held-out NEON tiles with ``geosr evaluate``'s
code (tools/bundled_weights.py ``measure``). ``base-seed`` repeats ``base`` with another seed:
the spread between the two is the noise a difference has to clear. Results go to
``OUT/probes.json`` (rewritten after every probe, so a stopped run keeps what it measured) and
a Markdown table ``OUT/probes.md`` for docs/training.md.

    nice -n 19 python tools/recipe_probes.py --model edsr-baseline --scale 2 \\
        --init geosr/models/weights/edsr-baseline_x2_3b.safetensors --steps 300 \\
        --out runs/probes_x2

Steps, not seconds, make probes comparable on a machine whose load changes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

#: the recipe every probe starts from: the EDSR paper's 16 × 48² LR patches, lr 1e-4 (a
#: fine-tune's), cosine annealed over the probe, L1, natural images and the NEON tiles
BASE = {"batch": 16, "patch_lr": 48, "lr": 1e-4, "seed": 8, "neon": True, "config": {}}
#: name -> (what changes, the entries of BASE it changes)
PROBES: dict[str, tuple[str, dict]] = {
    "base": ("nothing (16 × 48² LR patches, lr 1e-4, L1, natural + NEON)", {}),
    "base-seed": ("another seed (the noise)", {"seed": 2}),
    "charbonnier": ("Charbonnier loss instead of L1", {"config": {"loss": "charbonnier"}}),
    "ema": ("EMA of the weights (0.999)", {"config": {"ema": 0.999}}),
    "big-patch": ("4 × 96² LR patches (same pixels)", {"batch": 4, "patch_lr": 96}),
    "lr-4e-4": ("learning rate 4e-4", {"lr": 4e-4}),
    "natural-only": ("T91 + BSD200 only (no NEON tiles)", {"neon": False}),
}


def _in_repo(path: Path) -> Path:
    path = Path(path).resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def train_cmd(name: str, *, model: str, scale: int, init: Path, steps: int, out: Path,
              data: Path, neon: Path, neon_val: Path) -> tuple[list[str], Path]:
    """The ``geosr train`` command of probe ``name`` and the weights file it writes."""
    r = {**BASE, **PROBES[name][1]}
    run = out / name
    run.mkdir(parents=True, exist_ok=True)
    config = run / "probe.json"
    config.write_text(json.dumps(r["config"]))
    # inside the repository relative (cards record the paths as given; the command runs there)
    folders = [_in_repo(p) for p in
               [data / "t91", data / "bsd200"] + ([neon] if r["neon"] else [])]
    neon_val = _in_repo(neon_val)
    geosr = Path(sys.executable).parent / "geosr"
    cmd = [str(geosr), "train", "--model", model, "--scale", str(scale),
           *[a for d in folders for a in ("--data", str(d))],
           "--val-data", str(neon_val), "--out", str(run / "train"), "--init-weights",
           str(init), "--max-steps", str(steps), "--batch", str(r["batch"]), "--patch",
           str(r["patch_lr"] * scale), "--lr", str(r["lr"]), "--seed", str(r["seed"]),
           "--torch-threads", "1", "--val-every", "0", "--log-every", "50",
           "--config", str(config)]
    return cmd, run / "train/final.safetensors"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="edsr-baseline")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--init", type=Path, required=True, help="the weights every probe starts from")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--probes", default=",".join(PROBES), help="comma-separated, of " +
                    ", ".join(PROBES))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sets", default="set5,set14,neon_val16",
                    help="comma-separated sets to score on (tools/bundled_weights.py measure)")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared/data")
    ap.add_argument("--splits", type=Path, default=REPO / "runs/data",
                    help="tools/bundled_weights.py splits output (neon_train, neon_val)")
    args = ap.parse_args(argv)
    from bundled_weights import measure

    names = [p for p in args.probes.split(",") if p]
    sets = [s for s in args.sets.split(",") if s]
    bad = set(names) - set(PROBES)
    if bad:
        raise SystemExit(f"unknown probe(s) {sorted(bad)}: use {', '.join(PROBES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    res_path = args.out / "probes.json"
    res = json.loads(res_path.read_text()) if res_path.is_file() else {}
    from geosr.models.card import sidecar_path, weights_sha256

    start = {"init": str(args.init), "sha256": weights_sha256(args.init), "steps": args.steps,
             "model": args.model, "scale": args.scale}
    if res.get("start", start) != start:
        raise SystemExit(f"{res_path} was measured from another start ({res['start']}); give "
                         "a new --out")
    res["start"] = start
    # every probe starts from this copy: the file at --init may be replaced meanwhile
    # (shipping a probe's weights replaces it)
    init = args.out / f"start_{args.init.name}"
    if not init.is_file():
        shutil.copyfile(args.init, init)
        if sidecar_path(args.init).is_file():
            shutil.copyfile(sidecar_path(args.init), sidecar_path(init))
    args.init = init
    if "start_scores" not in res:
        res["start_scores"] = measure(args.init, args.model, args.scale, 3, args.shared,
                                      args.splits, only=sets)
        res_path.write_text(json.dumps(res, indent=1))
    for name in names:
        if name in res.get("probes", {}):
            continue  # measured by an earlier run: probes resume
        cmd, weights = train_cmd(name, model=args.model, scale=args.scale, init=args.init,
                                 steps=args.steps, out=args.out,
                                 data=args.shared / "train",
                                 neon=args.splits / "neon_train", neon_val=args.splits / "neon_val")
        t0 = time.perf_counter()
        log = args.out / name / "train.log"
        with open(log, "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO).returncode
        seconds = time.perf_counter() - t0
        if rc != 0 or not weights.is_file():
            print(f"{name}: training failed (rc {rc}); see {log}", flush=True)
            continue
        scores = measure(weights, args.model, args.scale, 3, args.shared, args.splits,
                         only=sets)
        res.setdefault("probes", {})[name] = {"what": PROBES[name][0], "train_s": round(seconds),
                                              "scores": scores}
        res_path.write_text(json.dumps(res, indent=1))
        (args.out / "probes.md").write_text(table(res))
    print(table(res))
    return 0


def table(res: dict) -> str:
    """Markdown: each probe's PSNR change from the starting weights on each set."""
    start = res["start_scores"]
    sets = list(start)
    head = ("| probe | what changes | " + " | ".join(f"{s} Δ dB" for s in sets)
            + " | train s |\n|---|---|" + "---|" * (len(sets) + 1) + "\n")
    rows = []
    for name, p in res.get("probes", {}).items():
        d = [p["scores"][s]["psnr"] - start[s]["psnr"] for s in sets]
        rows.append(f"| {name} | {p['what']} | " + " | ".join(f"{v:+.3f}" for v in d)
                    + f" | {p['train_s']} |")
    first = " / ".join(f"{start[s]['psnr']:.2f}" for s in sets)
    return (f"{res['start']['model']} ×{res['start']['scale']}, {res['start']['steps']} steps "
            f"from {Path(res['start']['init']).name} ({first} dB on {' / '.join(sets)})\n\n"
            + head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
