"""One GPU round (issue #15): make a rare, short loan of a GPU machine count.

A loan is ~15 minutes of one H100/H200, start-up included, and a call carries at most 64 MiB
(tracked files, wheels and data together). The GDAL wheels alone are ~50 MB, so a round is two
calls of this one script, each prepared by one command here:

``prepare check``
    untrack what the call does not need (bundled weights, pictures, the sample), download the
    wheels the GPU image lacks (rasterio, pyproj, affine, dask, ...) into ``.whl``, print the
    travel size. Then on the device: ``run --stages tests,bench``.
``prepare train``
    untrack the same, copy (never link: links travel as links) into ``data_gpu/`` the shipped
    weights of ``--models`` (default rdn: the x4 file; ``init/``: the round starts from them)
    and a training selection that fits
    beside the tree: T91, the NEON training tiles, as much of BSD200 as fits. No wheels:
    training on images never imports rasterio. Then on the device:
    ``run --stages train``.
``restore``
    track again what ``prepare`` untracked.
``run``
    the device side. ``tests``: every ``gpu``-marked test (``pytest -m gpu``); ``bench``:
    ``geosr benchmark --device cuda`` for RDN x4 and EDSR-baseline x2 (model-only, end to end on
    a 4096² GeoTIFF and the peer-style tiler in the same run) with the shipped weights' effective
    halos, again with 4 threads, nearest-neighbour x4/x2 (the pipeline without a network), RDN
    x4 compiled too with ``--compile-bench``; ``train``: RDN
    (the paper's D16 C8 G64) at x4 under bf16/channels_last with the images resident on the GPU,
    from the shipped RDN x4 weights when there are any (rounds accumulate), then the x2 and x3
    upsamplers on that body kept frozen (one body, three small heads: MDSR's sharing); before
    it, any other network of ``--models rdn,liif:60,...`` for its seconds from its carried
    weights, whole, by its own recipe. It writes
    ``gpu_round.json`` (device, stage results, cards), ``gpu_round.log`` (all output) and the
    weights as fp16 safetensors pieces of <= 15 MB (``rdn_piece_<i>.safetensors``): at most 8
    files of 16 MiB come back. Each stage has a share of ``--deadline`` and the JSON is rewritten
    after each, so a stage that dies or overruns costs only itself.
``assemble PIECES_DIR``
    here, after the round: rebuild ``runs/gpu_round/rdn_x{2,3,4}/final.safetensors`` and
    ``runs/gpu_round/<other>/final.safetensors`` (+ the card the trainer wrote) from the pieces, ready for ``tools/bundled_weights.py measure`` and ``ship``.

``run --dry-run`` is the same round on the CPU with a tiny RDN, tiny data and tiny budgets;
tests/tools/test_gpu_round.py runs it, so the round cannot die on a typo when GPU time comes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # geosr from this checkout, installed or not
SHARED = REPO.parent / "shared"
#: what a call never needs: bundled weights (the round trains its own; benchmarks run random
#: weights, which time the same), pictures and the Quick-start sample
UNTRACK = ("geosr/models/weights", "weights", "docs/img", "examples")
#: where ``prepare train`` puts the shipped RDN x4 weights (if any) for the round to start from
INIT = "data_gpu/init"
#: the wheels the GPU image lacks for the tests and the benchmark (GeoTIFF I/O, CRS maths, dask)
WHEELS = ("rasterio", "pyproj", "affine", "click-plugins", "cligj", "dask", "partd", "locket")
CALL_LIMIT = 64 * 2**20
PIECE_BYTES = 15_000_000
#: RDN's body: everything but the upsampler; the x2/x3 heads train on it frozen
RDN_BODY = ["SFENet1.", "SFENet2.", "RDBs.", "GFF."]
HEAD_PREFIX = "UPNet."
#: benchmarks of the round: (model, scale, extra options)
#: (the 4-thread rows: does more overlap of reading, inference and writing close the gap
#: between end to end and model-only that round 2 measured with the default 2 threads? The
#: nearest-neighbour rows: the pipeline's own ceiling without a network, reading, stitching and
#: writing the same output pixels)
BENCH = (("rdn", 4, ()), ("rdn", 4, ("--threads", "4", "--no-baseline")),
         ("edsr-baseline", 2, ()), ("edsr-baseline", 2, ("--threads", "4", "--no-baseline")),
         ("nearest", 4, ("--no-baseline",)), ("nearest", 2, ("--no-baseline",)))
#: ``run --compile-bench`` adds it: torch.compile's first compile ran past round 1's share
COMPILE_BENCH = ("rdn", 4, ("--compile", "--size", "2048"))
#: the shipped weights' measured effective halos, written by ``prepare check`` (the weights do
#: not travel and the benchmarks run random weights, which carry no card)
BENCH_HALOS = ".whl/bench_halos.json"
DRY_BENCH = (("espcn", 2, ()),)
DRY_RDN = {"D": 2, "C": 2, "G": 8, "G0": 8}
#: networks other than RDN a round continues from their shipped weights (``--models``; only
#: those with bundled weights: a round is no place to start from scratch), at the scale their
#: shipped file and validation use; each trains whole (LIIF's encoder too, which its CPU
#: training kept frozen) by its own recipe at half the recipe's rate (:func:`continue_lr`)
OTHER_SCALES = {"liif": 4, "basicvsr": 4, "edsr-baseline": 4, "espcn": 4}
#: seconds of another network named without its own (``liif`` = ``liif:60``)
OTHER_SECONDS = 60.0
#: the least RDN x4 keeps when other networks train before it (they come first)
MIN_X4_SECONDS = 60.0
#: the x4 learning rate from scratch (batch 32: twice the EDSR/RDN papers' 1e-4 at 16); a
#: round that continues the shipped weights restarts at half of it (round 2's restart at the
#: full rate left round 1's basin: the mean of the two weight sets was worse than either)
LR = 2e-4
#: seconds a training run spends outside its --time-budget (CUDA start, images onto the GPU,
#: the final validation and save)
HEAD_OVERHEAD = 25.0


# -- here: prepare, restore, assemble --------------------------------------------------------

def _exclude(paths: list[str], *, add: bool) -> None:
    f = REPO / ".git/info/exclude"
    f.parent.mkdir(parents=True, exist_ok=True)
    lines = f.read_text().splitlines() if f.exists() else []
    want = [f"/{p}/" if (REPO / p).is_dir() or p.endswith("/") else f"/{p}" for p in paths]
    keep = [ln for ln in lines if ln not in want]
    f.write_text("\n".join(keep + (want if add else [])) + "\n")


def _git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=REPO, check=True)


def travel_bytes(carry: list[str]) -> int:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    total = sum((REPO / f.decode()).stat().st_size for f in files
                if f and (REPO / f.decode()).is_file())
    for c in carry:
        total += sum(p.stat().st_size for p in (REPO / c).rglob("*") if p.is_file())
    return total


def parse_models(text: str) -> list[tuple[str, float | None]]:
    """``"rdn,liif:120,basicvsr"`` -> ``[("rdn", None), ("liif", 120.0), ("basicvsr", 60.0)]``:
    what a round trains and, for networks other than RDN, for how many seconds
    (:data:`OTHER_SECONDS` unless given)."""
    import math

    out: list[tuple[str, float | None]] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, secs = item.partition(":")
        if name != "rdn" and name not in OTHER_SCALES:
            raise SystemExit(f"unknown model {name!r} for a round: use rdn or one of "
                             f"{', '.join(OTHER_SCALES)}")
        if name == "rdn":
            if secs:
                raise SystemExit("rdn takes --train-seconds and --head-seconds, not rdn:SECONDS")
            out.append((name, None))
            continue
        try:
            seconds = float(secs) if secs else OTHER_SECONDS
        except ValueError:
            raise SystemExit(f"bad seconds in {item!r}: use NAME:SECONDS, e.g. liif:120")
        if not math.isfinite(seconds) or seconds <= 0:
            raise SystemExit(f"bad seconds in {item!r}: give a positive number, e.g. liif:120")
        out.append((name, seconds))
    if len({n for n, _ in out}) != len(out):
        raise SystemExit(f"a model named twice in {text!r}")
    return out


def shipped_init(name: str) -> Path | None:
    """The shipped 3-band weights a round continues for ``name`` (RDN: the x4 file)."""
    from geosr.models.bundled import bundled_weights

    return bundled_weights(name, scale=4 if name == "rdn" else OTHER_SCALES[name], bands=3)


def prepare(call: str, *, shared: Path, python: str = "3.12", models: str = "rdn",
            margin: int = 1_500_000) -> None:
    chosen = parse_models(models)  # a typo must not leave git's index changed
    _git("rm", "-r", "-q", "--cached", "--ignore-unmatch", *UNTRACK)
    _exclude(list(UNTRACK) + [".whl", "data_gpu"], add=True)
    if call == "check":
        shutil.rmtree(REPO / "data_gpu", ignore_errors=True)
        (REPO / ".whl").mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", python, "--implementation",
                        "cp", *[f"--platform={p}" for p in (
                            "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                            "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                            "manylinux2014_x86_64", "manylinux1_x86_64")],
                        "-d", str(REPO / ".whl"), *WHEELS], check=True)
        (REPO / BENCH_HALOS).write_text(json.dumps(shipped_halos()))
        carry = [".whl"]
    else:
        carry = ["data_gpu"]
        shutil.rmtree(REPO / ".whl", ignore_errors=True)
        shutil.rmtree(REPO / "data_gpu", ignore_errors=True)
        room = CALL_LIMIT - travel_bytes([]) - margin
        from geosr.models.card import sidecar_path

        (REPO / INIT).mkdir(parents=True)
        for name, _ in chosen:
            shipped = shipped_init(name)
            if shipped is None:
                continue
            # rounds accumulate: each network starts from its last shipped weights
            for f in (shipped, sidecar_path(shipped)):
                shutil.copyfile(f, REPO / INIT / f.name)
                room -= f.stat().st_size
        sys.path.insert(0, str(REPO / "tools"))
        from bundled_weights import neon_split

        neon_train, _ = neon_split(shared / "data")
        t91 = sorted((shared / "data/train/t91").glob("*.png"))
        bsd = sorted((shared / "data/train/bsd200").glob("*.png"))
        for folder, files in (("t91", t91), ("neon", neon_train), ("bsd200", bsd)):
            d = REPO / "data_gpu" / folder
            d.mkdir(parents=True)
            for p in files:
                if p.stat().st_size > room:
                    break
                shutil.copyfile(p, d / p.name)
                room -= p.stat().st_size
            if not any(d.iterdir()):  # no room left: the trainer refuses an empty folder
                d.rmdir()
        n = {d.name: len(list(d.iterdir())) for d in sorted((REPO / "data_gpu").iterdir())
             if d.name != Path(INIT).name}
        print(f"data_gpu: {n} images")
    size = travel_bytes(carry)
    print(f"travel: {size / 1e6:.1f} MB of {CALL_LIMIT / 1e6:.1f} MB "
          f"({'fits' if size <= CALL_LIMIT else 'TOO BIG'}); carry {carry}")
    stages = "tests,bench" if call == "check" else f"train --models {models}"
    print(f"device command: python3 tools/gpu_round.py run --stages {stages} --out $OUT")
    print("afterwards: python tools/gpu_round.py restore")
    # the index now records the untracked paths as deleted: a commit would delete them
    print(f"WARNING: until restore, git's index records {', '.join(UNTRACK)} as deleted; "
          "commit nothing before `restore`", file=sys.stderr)


def shipped_halos() -> dict[str, int]:
    """``{"rdn x4": 7, ...}``: the effective halo in the card of each benchmarked network's
    bundled weights (geosr.halo), so that the round times the tiling a user of them gets."""
    from geosr.modelref import ModelRef, build_model
    from geosr.models.bundled import bundled_weights

    out = {}
    for model, scale, _ in BENCH:
        w = bundled_weights(model, scale=scale, bands=3)
        if w is None:
            continue
        net = build_model(ModelRef(name=model, scale=scale, weights=str(w)))
        if getattr(net, "effective_halo", None) is not None:  # the card's, as upscale reads it
            out[f"{model} x{scale}"] = int(net.halo)
    return out


def restore() -> None:
    _exclude(list(UNTRACK), add=False)
    _git("reset", "-q", "--", *UNTRACK)
    print("tracked again:", ", ".join(UNTRACK))


def device_folder(path: str) -> str:
    """A training folder as a card names it: ``data_gpu/<name>`` (what ``prepare train``
    copied there), not the device machine's absolute path."""
    return f"data_gpu/{Path(path).name}"


def assemble(pieces: Path, out: Path) -> list[Path]:
    """Rebuild each scale's weights file (fp16) and card from a round's pieces."""
    from safetensors.torch import load_file, save_file

    from geosr.models.card import weights_sha256

    flat: dict[str, Any] = {}
    for p in sorted(pieces.glob("rdn_piece_*.safetensors")):
        flat.update(load_file(p))
    res = json.loads((pieces / "gpu_round.json").read_text())
    by_scale: dict[str, dict[str, Any]] = {}
    for k, v in flat.items():
        tag, name = k.split("/", 1)
        by_scale.setdefault(tag, {})[name] = v
    others = set(res["stages"]["train"].get("others", []))
    if not by_scale:
        raise SystemExit(f"no weights in {pieces}: the round's train stage did not finish")
    heads = {t for t in by_scale if t not in others}
    if heads and "x4" not in heads:
        raise SystemExit(f"RDN heads but no x4 body in {pieces}: they cannot be assembled")
    body = ({k: v for k, v in by_scale["x4"].items() if not k.startswith(HEAD_PREFIX)}
            if heads else {})
    written = []
    for tag, sd in sorted(by_scale.items()):
        full = dict(sd) if tag == "x4" or tag in others else {**body, **sd}
        d = out / (tag if tag in others else f"rdn_{tag}")
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in full.items()}, str(d / "final.safetensors"))
        card = dict(res["stages"]["train"]["cards"][tag])
        card["sha256"] = weights_sha256(d / "final.safetensors")
        card["weights_file"] = "final.safetensors"
        if isinstance(card.get("training", {}).get("data"), list):  # the device's paths: named
            card["training"]["data"] = [device_folder(d) for d in card["training"]["data"]]
        card.setdefault("provenance", {})["gpu_round"] = {
            "device": res.get("device"), "torch": res.get("torch"), "started": res.get("started"),
            "body": ("own" if tag == "x4" or tag in others
                     else "the round's x4 body, frozen; own upsampler")}
        (d / "final.json").write_text(json.dumps(card, indent=1) + "\n")
        written.append(d)
        print(f"{d}: {len(full)} tensors")
    return written


# -- the device side ----------------------------------------------------------------------------

def continue_lr(name: str, scale: int) -> float:
    """Half the network's recipe rate: what a round continues shipped weights at (round 2's
    restart of RDN at its from-scratch rate left the shipped weights' basin)."""
    from geosr.train.recipes import recipe_for

    return recipe_for(name, scale)["lr"] / 2


def x4_lr(lr: float | None, init: Any) -> float:
    """The x4 run's learning rate: ``--lr`` if given, else :data:`LR`, halved when the round
    continues shipped weights (``init``)."""
    return lr if lr is not None else (LR / 2 if init else LR)


class Round:
    def __init__(self, out: Path, *, deadline: float, dry_run: bool, device: str) -> None:
        self.out, self.dry, self.device = out, dry_run, device
        self.t0 = time.monotonic()
        self.deadline = deadline
        self.work = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_round_{os.getpid()}"
        self.runs = self.work / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.log = (out / "gpu_round.log").open("a")
        self.res: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "dry_run": dry_run, "stages": {}}
        self.env = dict(os.environ)

    def left(self) -> float:
        return self.deadline - (time.monotonic() - self.t0)

    def save(self) -> None:
        tmp = self.out / "gpu_round.json.tmp"
        tmp.write_text(json.dumps(self.res, indent=1, default=str) + "\n")
        tmp.replace(self.out / "gpu_round.json")

    def sh(self, cmd: list[str], *, timeout: float, name: str) -> tuple[int, str]:
        """Run ``cmd`` with its output in the log; returns (rc, output)."""
        self.log.write(f"\n$ {' '.join(cmd)}\n")
        self.log.flush()
        t = time.monotonic()
        # its own process group: on timeout the whole group goes (compile workers, loaders),
        # which killing the child alone would leave running, holding the GPU the next needs
        p = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace",
                             start_new_session=True)
        try:
            text, _ = p.communicate(timeout=max(timeout, 1))
            rc = p.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            text, rc = p.communicate()[0], 124
        self.log.write(text)
        self.log.flush()
        print(f"[{time.monotonic() - self.t0:6.1f}s] {name}: rc {rc} in "
              f"{time.monotonic() - t:.1f}s", flush=True)
        return rc, text

    def setup(self, wheels: Path | None) -> None:
        site, shim, bindir = self.work / "site", self.work / "shim", self.work / "bin"
        for d in (site, shim, bindir):
            d.mkdir(exist_ok=True)
        if wheels is not None and any(wheels.glob("*.whl")):
            self.sh([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                     "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                     *map(str, sorted(wheels.glob("*.whl")))], timeout=180, name="wheels")
        # the CLI package installs as geosr_cli from cli/: a link stands in for `pip install -e`,
        # which would need a build backend fetched from the network
        if not (shim / "geosr_cli").exists():
            (shim / "geosr_cli").symlink_to(REPO / "cli")
        exe = bindir / "geosr"
        exe.write_text(f"#!{sys.executable}\nfrom geosr_cli.main import cli\ncli()\n")
        exe.chmod(0o755)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(site), str(shim), str(REPO)] + ([self.env["PYTHONPATH"]]
                                                 if self.env.get("PYTHONPATH") else []))
        self.env["PATH"] = f"{bindir}{os.pathsep}{self.env['PATH']}"
        self.env["PYTHONUNBUFFERED"] = "1"
        rc, text = self.sh([sys.executable, "-c",
                            "import torch, platform; print(torch.__version__); "
                            "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() "
                            "else platform.processor() or 'cpu')"], timeout=120, name="device")
        lines = text.strip().splitlines()
        self.res["torch"], self.res["device"] = (lines + ["?", "?"])[:2] if rc == 0 else ("?", "?")
        self.res["host"] = platform.node()
        self.save()

    def geosr(self, *args: str) -> list[str]:
        return [str(self.work / "bin/geosr"), *args]

    # -- stages -----------------------------------------------------------------------------
    def tests(self, share: float) -> None:
        files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                       if "mark.gpu" in p.read_text())
        rc, text = self.sh([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA",
                            "-p", "no:cacheprovider", *files], timeout=share, name="tests")
        summary = [ln for ln in text.splitlines()
                   if ln.startswith(("PASSED", "FAILED", "ERROR", "SKIPPED"))
                   or any(w in ln for w in (" passed", " failed", " skipped", " deselected"))]
        self.res["stages"]["tests"] = {"rc": rc, "files": files, "summary": summary[-40:],
                                      "tail": text[-3000:] if rc else ""}
        self.save()

    def bench(self, share: float, *, size: int, seconds: float, compile: bool = False) -> None:
        runs = DRY_BENCH if self.dry else BENCH + ((COMPILE_BENCH,) if compile else ())
        f = REPO / BENCH_HALOS
        halos = json.loads(f.read_text()) if f.is_file() else {}
        out = []
        end = time.monotonic() + share
        for model, scale, extra in runs:
            if f"{model} x{scale}" in halos:
                extra = (*extra, "--halo", str(halos[f"{model} x{scale}"]))
            left = end - time.monotonic()
            if left < 20:
                out.append({"model": model, "scale": scale, "skipped": "no time left"})
                continue
            rc, text = self.sh(self.geosr("benchmark", "--model", model, "--scale", str(scale),
                                          "--device", self.device, "--size", str(size),
                                          "--seconds", str(seconds), "--json", *extra),
                               timeout=left, name=f"bench {model} x{scale} {' '.join(extra)}")
            row: dict[str, Any] = {"model": model, "scale": scale, "extra": list(extra), "rc": rc}
            result = _json_object(text) if rc == 0 else None
            if result is not None:
                row["result"] = result
            else:
                row["tail"] = text[-2000:]
            out.append(row)
            self.res["stages"]["bench"] = out
            self.save()

    def train(self, data: list[str], *, models: list[tuple[str, float | None]],
              x4_seconds: float, head_seconds: float, batch: int, patch: int,
              lr: float | None) -> None:
        """Each other network first (fixed seconds each), then RDN x4 and its heads in what
        is left (its share kept for it), then the pieces."""
        st: dict[str, Any] = {"init": None, "runs": {}, "cards": {}, "others": []}
        self.res["stages"]["train"] = st
        rdn = any(n == "rdn" for n, _ in models)
        # the others take their seconds first; RDN keeps at least its heads and a short x4 run
        rdn_least = (min(x4_seconds, MIN_X4_SECONDS) + 2 * head_seconds + 3 * HEAD_OVERHEAD
                     if rdn else 0.0)
        for name, seconds in models:
            if name != "rdn":
                self.train_other(data, name, seconds or OTHER_SECONDS, reserve=rdn_least)
        if rdn:
            self.train_rdn(data, x4_seconds=x4_seconds, head_seconds=head_seconds, batch=batch,
                           patch=patch, lr=lr)
        self.pack()

    def _carried(self, name: str) -> Path | None:
        """The init weights ``prepare train`` carried for ``name`` (else its shipped ones)."""
        shipped = shipped_init(name)
        if shipped is not None and (REPO / INIT / shipped.name).is_file():
            return REPO / INIT / shipped.name
        return shipped

    def train_other(self, data: list[str], name: str, seconds: float, *,
                    reserve: float) -> None:
        st = self.res["stages"]["train"]
        st["others"].append(name)
        asked, seconds = seconds, min(seconds, self.left() - reserve - HEAD_OVERHEAD)
        if seconds < min(5.0, asked):
            st["runs"][name] = {"skipped": "no time left"}
            self.save()
            return
        init = self._carried(name)
        if init is None:
            st["runs"][name] = {"skipped": "no shipped weights to continue"}
            self.save()
            return
        run = self.runs / name
        cmd = self.geosr("train", "--model", name, "--scale", str(OTHER_SCALES[name]),
                         "--device", self.device, "--out", str(run), "--val-every", "0",
                         "--log-every", "100", "--checkpoint-every", "1000", "--seed", "0",
                         "--time-budget", f"{seconds:.0f}", "--anneal-to-budget",
                         *[a for d in data for a in ("--data", d)],
                         "--init-weights", str(init),
                         "--lr", str(continue_lr(name, OTHER_SCALES[name])),
                         # a dry run's images are tiny: patches to fit them
                         *(["--batch", "2", "--patch", "32"] if self.dry else []))
        rc, text = self.sh(cmd, timeout=seconds + 120, name=f"train {name}")
        st["runs"][name] = {"rc": rc, "tail": text[-1500:], "init": init.name}
        card = run / "final.json"
        if rc == 0 and card.is_file():
            st["cards"][name] = json.loads(card.read_text())
        self.save()

    def train_rdn(self, data: list[str], *, x4_seconds: float, head_seconds: float,
                  batch: int, patch: int, lr: float | None) -> None:
        shipped = self._carried("rdn")
        if self.dry:  # the tiny RDN would take one stray tensor from the real weights
            shipped = None
        common = ["--model", "rdn", "--device", self.device, "--batch", str(batch),
                  "--val-every", "0", "--log-every", "100", "--checkpoint-every", "1000",
                  "--seed", "0"] + [a for d in data for a in ("--data", d)]
        model_args = {"model_args": DRY_RDN} if self.dry else {}
        st = self.res["stages"]["train"]
        st["init"] = str(shipped.name) if shipped else None
        plans = [(4, x4_seconds, shipped, {}), (2, head_seconds, "x4", {"freeze": RDN_BODY}),
                 (3, head_seconds, "x4", {"freeze": RDN_BODY})]
        for i, (scale, seconds, init, cfg) in enumerate(plans):
            run = self.runs / f"rdn_x{scale}"
            cfg_path = self.work / f"x{scale}.json"
            cfg_path.write_text(json.dumps({**model_args, **cfg, "grad_clip": 10.0,
                                            "warmup_steps": 0 if cfg else 100}))
            init_path = self.runs / "rdn_x4/final.safetensors" if init == "x4" else init
            if init == "x4" and not Path(init_path).is_file():
                st["runs"][f"x{scale}"] = {"skipped": "no x4 body"}
                continue
            # leave the later heads their share, and start-up (CUDA, images onto the GPU) and
            # the packing their margin
            later = sum(p[1] + HEAD_OVERHEAD for p in plans[i + 1:])
            asked, seconds = seconds, min(seconds, self.left() - later - HEAD_OVERHEAD)
            if seconds < min(5.0, asked):
                st["runs"][f"x{scale}"] = {"skipped": "no time left"}
                continue
            cmd = self.geosr("train", *common, "--scale", str(scale), "--out", str(run),
                             "--config", str(cfg_path), "--time-budget", f"{seconds:.0f}",
                             "--anneal-to-budget", "--patch", str(patch // 4 * scale),
                             "--lr", str(x4_lr(lr, shipped) if not cfg else (lr or LR) * 5),
                             *(["--init-weights", str(init_path)] if init_path else []))
            rc, text = self.sh(cmd, timeout=seconds + 120, name=f"train rdn x{scale}")
            st["runs"][f"x{scale}"] = {"rc": rc, "tail": text[-1500:]}
            card = run / "final.json"
            if rc == 0 and card.is_file():
                st["cards"][f"x{scale}"] = json.loads(card.read_text())
            self.save()

    def pack(self) -> None:
        import torch
        from safetensors.torch import load_file, save_file

        flat: dict[str, torch.Tensor] = {}
        st = self.res["stages"]["train"]
        for scale in (4, 2, 3):
            f = self.runs / f"rdn_x{scale}/final.safetensors"
            if not f.is_file() or f"x{scale}" not in st["cards"]:  # assemble needs the card
                continue
            sd = load_file(f)
            moved = [k for k, v in sd.items() if scale != 4 and not k.startswith(HEAD_PREFIX)
                     and not (f"x4/{k}" in flat and torch.equal(v.half(), flat[f"x4/{k}"]))]
            if moved:  # its head fits another body: drop it, keep the rest of the round
                st["runs"][f"x{scale}"]["rc"] = 1
                st["runs"][f"x{scale}"]["error"] = (f"{moved[0]} moved although the body was "
                                                    "frozen; head not packed")
                st["cards"].pop(f"x{scale}", None)
                continue
            for k, v in sd.items():
                if scale == 4 or k.startswith(HEAD_PREFIX):
                    flat[f"x{scale}/{k}"] = v.half() if v.is_floating_point() else v
        for name in st.get("others", []):
            f = self.runs / name / "final.safetensors"
            if f.is_file() and name in st["cards"]:
                for k, v in load_file(f).items():
                    flat[f"{name}/{k}"] = v.half() if v.is_floating_point() else v
        pieces, cur, size = [], {}, 0
        for k in sorted(flat):
            n = flat[k].numel() * flat[k].element_size()
            if cur and size + n > PIECE_BYTES:
                pieces.append(cur)
                cur, size = {}, 0
            cur[k], size = flat[k].contiguous(), size + n
        if cur:
            pieces.append(cur)
        for i, piece in enumerate(pieces):
            save_file(piece, str(self.out / f"rdn_piece_{i}.safetensors"))
        self.res["stages"]["train"]["pieces"] = len(pieces)
        self.save()


def training_folders(root: Path) -> list[str]:
    """The image folders ``prepare train`` filled (not the weights in ``init/``; an empty one,
    which the trainer would refuse, left out)."""
    return [str(d) for d in sorted(root.glob("*"))
            if d.is_dir() and d.name != Path(INIT).name and any(d.iterdir())]


def run(args: argparse.Namespace) -> int:
    out = Path(args.out or os.environ.get("OUT") or REPO / "runs/gpu_round_out")
    out.mkdir(parents=True, exist_ok=True)
    stages = [s for s in args.stages.split(",") if s]
    bad = set(stages) - {"tests", "bench", "train"}
    if bad:
        raise SystemExit(f"unknown stage(s) {sorted(bad)}: use tests, bench, train")
    models = parse_models(args.models)  # before any device time is spent
    data = args.data or training_folders(REPO / "data_gpu")
    if "train" in stages and not data:  # before any device time is spent
        raise SystemExit("no training data: run `prepare train` here (data_gpu/) or pass "
                         "--data, or leave train out of --stages")
    device = "cpu" if args.dry_run else "cuda"
    r = Round(out, deadline=args.deadline, dry_run=args.dry_run, device=device)
    # a dry run uses the environment it runs in unless wheels are named
    wheels = Path(args.wheels) if args.wheels else (None if args.dry_run else REPO / ".whl")
    r.setup(wheels if wheels is not None and wheels.is_dir() else None)
    r.res["stages_asked"] = stages
    if "tests" in stages:
        r.tests(min(args.tests_seconds, r.left() - 30))
    if "bench" in stages:
        share = r.left() - 30 if "train" not in stages else min(args.bench_seconds_total,
                                                                r.left() - 120)
        r.bench(share, size=args.bench_size or (64 if args.dry_run else 4096),
                seconds=args.bench_seconds, compile=args.compile_bench)
    if "train" in stages:
        r.train(data, models=models, x4_seconds=args.train_seconds,
                head_seconds=args.head_seconds, batch=args.batch, patch=args.patch, lr=args.lr)
    r.res["wall_s"] = round(time.monotonic() - r.t0, 1)
    r.save()
    r.log.close()
    if not args.keep_work:  # everything worth keeping is in --out
        shutil.rmtree(r.work, ignore_errors=True)
    print(json.dumps({k: v for k, v in r.res.items() if k != "stages"}), flush=True)
    return 1 if failed_stages(r.res) else 0


def failed_stages(res: dict[str, Any]) -> list[str]:
    """The stages of a round's JSON that failed: tests by their rc, the benchmarks and the
    training runs each by their own (a run skipped for lack of time is not a failure)."""
    st = res.get("stages", {})
    failed = ["tests"] if st.get("tests", {}).get("rc", 0) != 0 else []
    failed += [f"bench {b['model']} x{b['scale']}" for b in st.get("bench", [])
               if b.get("rc", 0) != 0]
    failed += [f"train {tag}" for tag, v in st.get("train", {}).get("runs", {}).items()
               if v.get("rc", 0) != 0]
    return failed


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object that starts a line of ``text`` (the benchmark's --json output,
    which warnings may precede or follow), or ``None``."""
    dec = json.JSONDecoder()
    starts = ([0] if text.startswith("{") else []) + [
        j + 1 for j in range(len(text)) if text.startswith("\n{", j)]
    for i in starts:
        try:
            obj, _ = dec.raw_decode(text, i)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="untrack, fetch wheels or data, print the travel size")
    p.add_argument("call", choices=("check", "train"),
                   help="check: wheels for the tests and benchmarks; train: a data selection")
    p.add_argument("--shared", type=Path, default=SHARED,
                   help="the shared folder whose data/ holds the training sets")
    p.add_argument("--models", default="rdn",
                   help="train: whose shipped weights to carry (as run --models)")
    p.add_argument("--python", default="3.12",
                   help="the device image's Python, for which wheels are fetched (device "
                        "KINDS.md: 3.12.3 in 2026-11)")
    sub.add_parser("restore", help="track again what prepare untracked")
    a = sub.add_parser("assemble", help="rebuild weight files from a round's pieces")
    a.add_argument("pieces", type=Path, help="the folder a train call returned")
    a.add_argument("--out", type=Path, default=REPO / "runs/gpu_round",
                   help="where rdn_x{2,3,4}/final.safetensors go")
    r = sub.add_parser("run", help="the device side")
    r.add_argument("--stages", default="tests,bench,train",
                   help="comma-separated, of tests, bench, train")
    r.add_argument("--out", default=None, help="results folder (default $OUT)")
    r.add_argument("--wheels", default=None, help="folder of wheels to install (default .whl)")
    r.add_argument("--data", action="append", default=None,
                   help="training folder (repeatable; default data_gpu/*)")
    r.add_argument("--deadline", type=float, default=540.0,
                   help="seconds the whole run may take; stages shrink to fit")
    r.add_argument("--tests-seconds", type=float, default=150.0)
    r.add_argument("--bench-size", type=int, default=None)
    r.add_argument("--bench-seconds", type=float, default=3.0,
                   help="seconds of each timed measurement in a benchmark")
    r.add_argument("--bench-seconds-total", type=float, default=240.0,
                   help="the benchmarks' share when training follows in the same run")
    r.add_argument("--models", default="rdn",
                   help="what the train stage trains, each from its carried (else shipped) "
                        "weights: rdn (x4 for --train-seconds, then the x2/x3 heads) and others "
                        f"as NAME[:SECONDS] ({', '.join(OTHER_SCALES)}; {OTHER_SECONDS:g} s "
                        "unless given), trained first, e.g. rdn,liif:90")
    r.add_argument("--compile-bench", action="store_true",
                   help="also time RDN x4 under torch.compile (2048²; its first compile is slow)")
    r.add_argument("--train-seconds", type=float, default=330.0)
    r.add_argument("--head-seconds", type=float, default=40.0)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--patch", type=int, default=192,
                   help="HR patch side at x4 (the same LR patch at x2/x3)")
    r.add_argument("--lr", type=float, default=None,
                   help=f"x4 learning rate (default {LR:g} from scratch, {LR / 2:g} from the "
                        f"shipped weights); the x2/x3 heads, new each round, train at 5x it "
                        f"(default 5x {LR:g})")
    r.add_argument("--dry-run", action="store_true",
                   help="CPU and a tiny RDN; the budgets stay as given (pass small "
                        "--train-seconds/--head-seconds and --data)")
    r.add_argument("--keep-work", action="store_true",
                   help="keep the scratch folder ($TMPDIR/gpu_round_<pid>: the training runs)")
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.call, shared=args.shared, python=args.python, models=args.models)
    elif args.cmd == "restore":
        restore()
    elif args.cmd == "assemble":
        assemble(args.pieces, args.out)
    else:
        return run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
