"""tools/recipe_probes.py: each probe changes one thing from the base recipe, and the table
reports PSNR changes from the starting weights."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("recipe_probes", REPO / "tools/recipe_probes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _opts(cmd: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i, a in enumerate(cmd):
        if a.startswith("--"):
            out.setdefault(a, []).append(cmd[i + 1] if i + 1 < len(cmd) else "")
    return out


def test_every_probe_differs_from_base_in_what_it_names_only(tmp_path):
    tool = _tool()
    kw = dict(model="edsr-baseline", scale=2, init=Path("w.safetensors"), steps=7, out=tmp_path,
              data=Path("/d"), neon=Path("/n"), neon_val=Path("/v"))
    base, _ = tool.train_cmd("base", **kw)
    b = _opts(base)
    assert b["--batch"] == ["16"] and b["--patch"] == ["96"] and b["--max-steps"] == ["7"]
    assert b["--data"] == ["/d/t91", "/d/bsd200", "/n"]
    for name, (_, change) in tool.PROBES.items():
        cmd, weights = tool.train_cmd(name, **kw)
        o = _opts(cmd)
        differ = {k for k in set(o) | set(b) if o.get(k) != b.get(k)} - {"--out", "--config"}
        want = {"batch": {"--batch"}, "patch_lr": {"--patch"}, "lr": {"--lr"},
                "seed": {"--seed"}, "neon": {"--data"}, "config": set()}
        assert differ == set().union(*(want[k] for k in change)), name
        assert weights == tmp_path / name / "train/final.safetensors"
        assert json.loads((tmp_path / name / "probe.json").read_text()) == \
            change.get("config", {})


def test_table_reports_changes_from_the_start():
    tool = _tool()
    res = {"start": {"model": "edsr-baseline", "scale": 2, "steps": 10, "init": "a/w.safetensors"},
           "start_scores": {"set5": {"psnr": 36.0}, "neon": {"psnr": 30.0}},
           "probes": {"ema": {"what": "EMA", "train_s": 12,
                              "scores": {"set5": {"psnr": 36.05}, "neon": {"psnr": 29.99}}}}}
    text = tool.table(res)
    assert "| ema | EMA | +0.050 | -0.010 | 12 |" in text
    assert "36.00 / 30.00 dB on set5 / neon" in text
