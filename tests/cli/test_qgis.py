"""The QGIS Processing provider and ``geosr qgis install``.

Two layers:

* without QGIS: the install command (real files in tmp), the subprocess runner against the real
  ``geosr`` CLI, and that the plugin never imports geosr/torch;
* ``@pytest.mark.qgis``: the real QGIS from Debian (``.ci/install-qgis.sh``), headless, with a
  temporary profile: ``qgis_process`` lists and runs the algorithms, and a cancellation through
  ``QgsProcessingFeedback`` (QGIS's own python3) leaves no output.
"""
from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import compose
from geosr_cli.main import cli

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SRC = REPO / "cli" / "qgis" / "geosr_processing"
SCRIPTS = Path(__file__).resolve().parent / "qgis_scripts"
sys.path.insert(0, str(PLUGIN_SRC.parent))
from geosr_processing import runner  # noqa: E402  (plain Python, no qgis import)

sys.path.remove(str(PLUGIN_SRC.parent))

METRES_PER_INCH = 0.0254


def geosr_executable() -> str:
    """This environment's real ``geosr`` console script (not a pyenv shim when avoidable)."""
    script = Path(sysconfig.get_path("scripts")) / ("geosr.exe" if os.name == "nt" else "geosr")
    if script.is_file():
        return str(script)
    found = shutil.which("geosr")
    if not found:
        pytest.skip("the geosr console script is not installed (pip install -e .)")
    return found


def find_qgis_process() -> str | None:
    # Debian 12's /usr/bin/qgis_process wrapper adds --noversioncheck, which qgis_process.bin
    # rejects ("Command --noversioncheck not known!"): call the binary directly when it exists.
    for cand in ("/usr/bin/qgis_process.bin", shutil.which("qgis_process.bin"),
                 shutil.which("qgis_process")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


QGIS_PROCESS = find_qgis_process()
QGIS_PYTHON = "/usr/bin/python3"
needs_qgis = pytest.mark.skipif(
    QGIS_PROCESS is None,
    reason="QGIS is not installed (run .ci/install-qgis.sh: apt-get install qgis python3-qgis)")


# --------------------------------------------------------------------------- no QGIS needed

def test_plugin_never_imports_geosr_or_torch():
    """QGIS's Python has neither; the provider must only talk to the CLI."""
    for py in PLUGIN_SRC.glob("*.py"):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"geosr", "geosr_cli", "torch", "numpy", "rasterio"}, \
                    f"{py.name} imports {name}"


def test_metadata_declares_processing_provider():
    meta = (PLUGIN_SRC / "metadata.txt").read_text(encoding="utf-8")
    for key in ("name=geosr", "qgisMinimumVersion=3.22", "hasProcessingProvider=yes",
                "version=", "description=", "author=", "email="):
        assert key in meta, key


def _ini(pdir: Path) -> str:
    return (pdir / "QGIS" / "QGIS3.ini").read_text(encoding="utf-8")


def test_install_copies_enables_and_keeps_other_settings(tmp_path):
    qdir = tmp_path / "QGIS3"
    pdir = qdir / "profiles" / "work"
    (pdir / "QGIS").mkdir(parents=True)
    # a profile QGIS already wrote: the install must edit, not rewrite, it
    original = ("[PythonPlugins]\nprocessing=true\nother_plugin=false\n\n"
                "[Processing]\nConfiguration\\ACTIVATE_GDAL=true\n\n"
                "[qgis]\nsymbolsListGroupsIndex=0\ncolor=@Variant(\\0\\0\\0\\x43)\n")
    (pdir / "QGIS" / "QGIS3.ini").write_text(original, encoding="utf-8")
    exe = geosr_executable()

    res = CliRunner().invoke(cli, ["qgis", "install", "--qgis-dir", str(qdir),
                                   "--profile", "work", "--executable", exe])
    assert res.exit_code == 0, res.output
    target = pdir / "python" / "plugins" / "geosr_processing"
    assert target.is_dir() and not target.is_symlink()
    for name in ("metadata.txt", "__init__.py", "provider.py", "algorithms.py", "runner.py"):
        assert (target / name).read_bytes() == (PLUGIN_SRC / name).read_bytes()
    assert not list(target.rglob("__pycache__"))
    ini = _ini(pdir)
    assert "[PythonPlugins]\nprocessing=true\nother_plugin=false\ngeosr_processing=true\n" in ini
    assert f"Configuration\\GEOSR_EXECUTABLE={Path(exe).resolve().as_posix()}" in ini
    assert "Configuration\\ACTIVATE_GDAL=true" in ini
    assert "color=@Variant(\\0\\0\\0\\x43)" in ini
    assert ini.count("[PythonPlugins]") == 1 and ini.count("[Processing]") == 1

    # reinstalling replaces the plugin and does not duplicate keys
    res = CliRunner().invoke(cli, ["qgis", "install", "--qgis-dir", str(qdir),
                                   "--profile", "work", "--executable", exe])
    assert res.exit_code == 0, res.output
    assert _ini(pdir).count("geosr_processing=true") == 1

    res = CliRunner().invoke(cli, ["qgis", "uninstall", "--qgis-dir", str(qdir),
                                   "--profile", "work"])
    assert res.exit_code == 0, res.output
    assert not target.exists()
    ini = _ini(pdir)
    assert "geosr_processing" not in ini and "GEOSR_EXECUTABLE" not in ini
    assert "other_plugin=false" in ini and "symbolsListGroupsIndex=0" in ini


def test_install_refuses_a_mistyped_settings_folder(tmp_path):
    res = CliRunner().invoke(cli, ["qgis", "install", "--qgis-dir", str(tmp_path / "QGSI3"),
                                   "--no-executable"])
    assert res.exit_code == 1 and "--qgis-dir" in res.stderr and "does not exist" in res.stderr
    assert not (tmp_path / "QGSI3").exists()


def test_install_link_and_default_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("QGIS_CUSTOM_CONFIG_PATH", str(tmp_path / "custom"))
    res = CliRunner().invoke(cli, ["qgis", "install", "--link", "--no-executable"])
    assert res.exit_code == 0, res.output
    target = tmp_path / "custom" / "profiles" / "default" / "python" / "plugins" / "geosr_processing"
    assert target.is_symlink()
    assert target.resolve() == PLUGIN_SRC.resolve()
    ini = _ini(tmp_path / "custom" / "profiles" / "default")
    assert "[PythonPlugins]\ngeosr_processing=true" in ini and "GEOSR_EXECUTABLE" not in ini
    # uninstall removes the link, never the package it points to
    res = CliRunner().invoke(cli, ["qgis", "uninstall"])
    assert res.exit_code == 0, res.output
    assert not target.is_symlink() and (PLUGIN_SRC / "metadata.txt").is_file()


def test_install_default_profile_is_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("QGIS_CUSTOM_CONFIG_PATH", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if sys.platform.startswith("win") or sys.platform == "darwin":
        pytest.skip("the ~/.local/share default is the Linux location")
    res = CliRunner().invoke(cli, ["qgis", "install", "--no-executable"])
    assert res.exit_code == 0, res.output
    pdir = tmp_path / ".local/share/QGIS/QGIS3/profiles/default"
    assert (pdir / "python/plugins/geosr_processing/metadata.txt").is_file()
    assert "geosr_processing=true" in _ini(pdir)


def test_install_refuses_to_replace_a_foreign_folder(tmp_path):
    target = tmp_path / "profiles" / "default" / "python" / "plugins" / "geosr_processing"
    target.mkdir(parents=True)
    (target / "mine.txt").write_text("not geosr")
    res = CliRunner().invoke(cli, ["qgis", "install", "--qgis-dir", str(tmp_path),
                                   "--no-executable"])
    assert res.exit_code == 1
    assert "is not the geosr plugin" in res.output and "move it away" in res.output
    assert (target / "mine.txt").is_file()


def _make_exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.mark.skipif(os.name == "nt", reason="POSIX executables")
def test_find_executable_order(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    on_path = _make_exe(tmp_path / "bin" / "geosr")
    from_env = _make_exe(tmp_path / "env-geosr")
    from_setting = _make_exe(tmp_path / "setting-geosr")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("GEOSR_EXECUTABLE", str(from_env))
    assert runner.find_executable(str(from_setting)) == (str(from_setting),
                                                         "Processing setting GEOSR_EXECUTABLE")
    assert runner.find_executable("") == (str(from_env), "$GEOSR_EXECUTABLE")
    monkeypatch.delenv("GEOSR_EXECUTABLE")
    assert runner.find_executable(None) == (str(on_path), "PATH")
    # a broken explicit choice is an error, not a silent fall-through to PATH
    with pytest.raises(runner.GeosrCliError, match="Settings > Options > Processing"):
        runner.find_executable(str(tmp_path / "typo"))
    monkeypatch.setenv("GEOSR_EXECUTABLE", str(tmp_path / "typo"))
    with pytest.raises(runner.GeosrCliError, match=r"\$GEOSR_EXECUTABLE=.*does not exist"):
        runner.find_executable("")
    monkeypatch.delenv("GEOSR_EXECUTABLE")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(runner.GeosrCliError, match="geosr executable was not found.*PATH"):
        runner.find_executable("")


def test_parse_stderr_line():
    assert runner.parse_stderr_line('{"event": "progress", "fraction": 0.42}') == \
        ("event", {"event": "progress", "fraction": 0.42})
    assert runner.parse_stderr_line("geosr: error: output exists; pass --overwrite") == \
        ("error", "output exists; pass --overwrite")
    assert runner.parse_stderr_line("{not json}") == ("log", "{not json}")
    assert runner.parse_stderr_line('{"no": "event"}')[0] == "log"
    assert runner.model_names([{"name": "edsr"}, "bicubic", {"name": "edsr"}]) == \
        ["edsr", "bicubic"]
    assert runner.model_names({"models": [{"name": "rdn", "scales": [2]}]}) == ["rdn"]
    # what geosr:upscale cannot run is not offered: stacks and reference-guided models
    assert runner.model_names([{"name": "basicvsr", "multi_frame": True},
                               {"name": "hpf", "reference_based": True},
                               {"name": "espcn", "multi_frame": False}]) == ["espcn"]


def test_runner_with_real_cli_progress_and_errors(make_geotiff, tmp_path):
    exe = geosr_executable()
    src = make_geotiff("in.tif", bands=1, height=48, width=40)
    dst = tmp_path / "out.tif"
    fractions: list[float] = []
    res = runner.run_geosr(exe, ["upscale", src, dst, "--model", "bicubic", "--scale", 2,
                                 "--progress", "json"], on_progress=fractions.append)
    assert res.returncode == 0, (res.error, res.log)
    assert fractions and fractions[-1] == pytest.approx(1.0)
    assert fractions == sorted(fractions)
    assert res.done_event == {"event": "done", "output": str(dst)}
    assert dst.is_file()

    # the same output again without --overwrite: the CLI's one-line error reaches the caller
    res = runner.run_geosr(exe, ["upscale", src, dst, "--model", "bicubic", "--progress",
                                 "json"])
    assert res.returncode == 1 and not res.canceled
    assert res.error and "--overwrite" in res.error


def big_geotiff(path: Path) -> Path:
    """Large enough (several processing blocks) that a run is still going at its first
    progress event."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="GTiff", width=2048, height=4096, count=1,
                       dtype="uint8", crs="EPSG:32633", tiled=True, blockxsize=256,
                       blockysize=256, transform=Affine(1, 0, 500000, 0, -1, 4100000)) as ds:
        ds.write(rng.integers(0, 255, (1, 4096, 2048), dtype=np.uint8))
    return path


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM")
def test_runner_cancel_terminates_the_cli_which_leaves_nothing(tmp_path):
    src = big_geotiff(tmp_path / "big.tif")
    outdir = tmp_path / "out"
    outdir.mkdir()
    fractions: list[float] = []
    res = runner.run_geosr(geosr_executable(),
                           ["upscale", src, outdir / "up.tif", "--model", "bicubic",
                            "--scale", 2, "--progress", "json"],
                           on_progress=fractions.append, is_canceled=lambda: bool(fractions))
    assert res.canceled and fractions and fractions[0] < 1.0
    assert res.returncode == 143  # 128 + SIGTERM: the CLI handled the signal itself
    assert res.done_event is None
    assert list(outdir.iterdir()) == []


def test_list_models_falls_back_when_cli_fails():
    names, problem = runner.list_models("/bin/false")
    assert names == runner.FALLBACK_MODELS and problem
    names, problem = runner.list_models(None)
    assert names == runner.FALLBACK_MODELS and "not found" in problem


@pytest.mark.skipif(os.name == "nt", reason="POSIX executables")
def test_list_models_asks_the_cli_once_and_caches(tmp_path):
    cache = tmp_path / "cache" / "models.json"
    names, problem = runner.list_models(geosr_executable(), cache_path=str(cache))
    assert problem is None and "bicubic" in names
    assert json.loads(cache.read_text())["names"] == names
    # the second call answers from the cache (proved by editing it)
    data = json.loads(cache.read_text())
    data["names"] = ["from-cache"]
    cache.write_text(json.dumps(data))
    assert runner.list_models(geosr_executable(), cache_path=str(cache)) == (["from-cache"], None)

    # the key: a program that always fails shows when the cache is (not) used
    failing = tmp_path / "false"
    shutil.copy2("/bin/false", failing)
    data["key"] = runner._exe_key(str(failing))
    cache.write_text(json.dumps(data))
    assert runner.list_models(str(failing), cache_path=str(cache))[0] == ["from-cache"]
    expired, problem = runner.list_models(str(failing), cache_path=str(cache), max_age_s=0)
    assert expired == runner.FALLBACK_MODELS and problem
    st = failing.stat()  # a reinstall rewrites the script: new mtime, cache ignored
    os.utime(failing, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert runner.list_models(str(failing), cache_path=str(cache))[0] == runner.FALLBACK_MODELS
    # failures are not cached
    bad = tmp_path / "bad.json"
    assert runner.list_models(str(failing), cache_path=str(bad))[1]
    assert not bad.exists()


# --------------------------------------------------------------------------- real QGIS

@pytest.fixture(scope="module")
def qgis_env(tmp_path_factory):
    """A throw-away HOME and QGIS profile with the plugin installed by ``geosr qgis install``."""
    if QGIS_PROCESS is None:
        pytest.skip("QGIS is not installed (run .ci/install-qgis.sh)")
    base = tmp_path_factory.mktemp("qgis")
    exe = geosr_executable()
    runtime = base / "runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(base / "home"), QGIS_CUSTOM_CONFIG_PATH=str(base / "qgis"),
               QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(runtime),
               GEOSR_EXECUTABLE=exe,
               # QGIS's embedded Python finds its stdlib from the first python3 on PATH; under
               # pytest that is this (pyenv/venv) interpreter, whose stdlib crashes QGIS's
               PATH=os.pathsep.join(["/usr/bin", "/bin", os.environ.get("PATH", "")]))
    (base / "home").mkdir()
    # the real console script, as a user would run it; --no-executable so the tests exercise
    # $GEOSR_EXECUTABLE (the Processing setting is covered by its own test)
    done = subprocess.run([exe, "qgis", "install", "--no-executable"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {"env": env, "base": base, "exe": exe,
            "plugins": base / "qgis" / "profiles" / "default" / "python" / "plugins"}


def qgis_process(qenv: dict, *args: str, env: dict | None = None, timeout: float = 120):
    return subprocess.run([QGIS_PROCESS, *args], env=env or qenv["env"], capture_output=True,
                          text=True, timeout=timeout)


def qgis_json(qenv: dict, *args: str, env: dict | None = None) -> dict:
    res = qgis_process(qenv, "--json", *args, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


@pytest.mark.qgis
@needs_qgis
def test_qgis_loads_plugin_and_lists_algorithms(qgis_env):
    res = qgis_process(qgis_env, "plugins")
    assert res.returncode == 0, res.stderr
    assert "* geosr_processing" in res.stdout  # '*' = loaded with a Processing provider
    res = qgis_process(qgis_env, "list")
    assert res.returncode == 0, res.stderr
    for alg in ("geosr:upscale", "geosr:info", "geosr:scale"):
        assert alg in res.stdout, res.stdout[-2000:]


@pytest.mark.qgis
@needs_qgis
def test_qgis_upscale_writes_the_scaled_grid(qgis_env, make_geotiff, tmp_path):
    import rasterio
    from affine import Affine

    src = make_geotiff("in.tif", bands=3, height=40, width=56,
                       transform=Affine(0.5, 0, 600000.0, 0, -0.5, 5000000.0))
    dst = tmp_path / "qgis out.tif"  # a space, as in real user paths
    out = qgis_json(qgis_env, "run", "geosr:upscale", "--", f"INPUT={src}", "MODEL=bicubic",
                    "SCALE=2", f"OUTPUT={dst}")
    assert Path(out["results"]["OUTPUT"]) == dst
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        assert (b.width, b.height, b.count) == (2 * a.width, 2 * a.height, a.count)
        assert b.transform.almost_equals(compose(a.transform, Affine.scale(0.5)))
        assert b.crs == a.crs
        assert np.allclose(tuple(b.bounds), tuple(a.bounds))
        qgis_pixels = b.read()
    # same bytes as the CLI run by hand: the provider passes the parameters through unchanged
    ref = tmp_path / "ref.tif"
    subprocess.run([qgis_env["exe"], "upscale", src, ref, "--model", "bicubic", "--scale", "2",
                    "-q"], check=True, capture_output=True, timeout=120)
    with rasterio.open(ref) as r:
        np.testing.assert_array_equal(r.read(), qgis_pixels)


@pytest.mark.qgis
@needs_qgis
@pytest.mark.parametrize("params, cli", [(["SCALE=2.5"], ["--scale", "2.5"]),
                                         (["TARGET_GSD=0.2"], ["--target-gsd", "0.2"])])
def test_qgis_upscale_any_scale_and_target_gsd(qgis_env, make_geotiff, tmp_path, params, cli):
    import rasterio
    from affine import Affine

    src = make_geotiff("in.tif", bands=1, height=21, width=30,
                       transform=Affine(0.5, 0, 600000.0, 0, -0.5, 5000000.0))
    dst = tmp_path / "q.tif"
    qgis_json(qgis_env, "run", "geosr:upscale", "--", f"INPUT={src}", "MODEL=bicubic",
              *params, f"OUTPUT={dst}")
    ref = tmp_path / "ref.tif"
    subprocess.run([qgis_env["exe"], "upscale", src, ref, "--model", "bicubic", *cli, "-q"],
                   check=True, capture_output=True, timeout=120)
    with rasterio.open(ref) as r, rasterio.open(dst) as q:
        assert q.shape == r.shape and q.shape != (21, 30)
        assert q.transform.almost_equals(r.transform)
        np.testing.assert_array_equal(r.read(), q.read())


@pytest.mark.qgis
@needs_qgis
@pytest.mark.skipif(shutil.which("ogr2ogr") is None, reason="ogr2ogr is not installed")
def test_qgis_upscale_with_an_aoi_layer(qgis_env, make_geotiff, tmp_path):
    """AOI: a polygon layer in another CRS (a Shapefile, which QGIS exports for geosr as a
    GeoPackage): the same pixels as the CLI's --aoi on the GeoJSON it was made from."""
    import rasterio
    from affine import Affine
    from pyproj import Transformer

    t = Affine(0.5, 0, 600000.0, 0, -0.5, 5000000.0)
    src = make_geotiff("in.tif", bands=3, height=40, width=56, transform=t)
    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    ring = [list(to_ll.transform(600000.0 + c * 0.5, 5000000.0 - r * 0.5))
            for c, r in ((5, 4), (40, 6), (12, 33), (5, 4))]
    gj = tmp_path / "town.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "town"},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    shp = tmp_path / "town.shp"
    subprocess.run(["ogr2ogr", "-f", "ESRI Shapefile", str(shp), str(gj)], check=True)
    dst = tmp_path / "qgis aoi.tif"
    qgis_json(qgis_env, "run", "geosr:upscale", "--", f"INPUT={src}", "MODEL=bicubic",
              "SCALE=2", f"AOI={shp}", f"OUTPUT={dst}")
    ref = tmp_path / "ref.tif"
    subprocess.run([qgis_env["exe"], "upscale", src, ref, "--model", "bicubic", "--scale", "2",
                    "--aoi", gj, "-q"], check=True, capture_output=True, timeout=120)
    with rasterio.open(dst) as q, rasterio.open(ref) as r, rasterio.open(src) as a:
        assert q.transform == r.transform and q.shape == r.shape
        assert q.width < 2 * a.width and q.height < 2 * a.height
        np.testing.assert_array_equal(q.read(masked=True).filled(0), r.read(masked=True).filled(0))
        np.testing.assert_array_equal(q.dataset_mask(), r.dataset_mask())
        assert (q.dataset_mask() == 0).any()  # outside the triangle


@pytest.mark.qgis
@needs_qgis
def test_qgis_upscale_reports_cli_errors(qgis_env, make_geotiff, tmp_path):
    src = make_geotiff("in.tif", bands=1, height=16, width=16)
    res = qgis_process(qgis_env, "run", "geosr:upscale", "--", f"INPUT={src}", "MODEL=bicubic",
                       "SCALE=2", "DEVICE=tpu9", f"OUTPUT={tmp_path / 'o.tif'}")
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "geosr upscale failed (exit code" in text and "tpu9" in text
    # QGIS reports the raised exception itself (qgis_process echoes it in plain lines too):
    # one error, not one more from the algorithm's own reportError
    assert text.count("ERROR:\tgeosr upscale failed (exit code") == 1, text
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.qgis
@needs_qgis
def test_qgis_model_enum_comes_from_the_cli(qgis_env):
    listed = subprocess.run([qgis_env["exe"], "models", "--json"], capture_output=True,
                            text=True, timeout=120)
    if listed.returncode == 0:
        expected = runner.model_names(json.loads(listed.stdout))
    else:  # `geosr models` unavailable: the documented fallback
        expected = runner.FALLBACK_MODELS
    res = qgis_process(qgis_env, "--json", "help", "geosr:upscale")
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)["parameters"]["MODEL"]
    assert model["raw_definition"]["options"] == expected
    assert model["raw_definition"]["uses_static_strings"] is True
    assert model["default_value"] == "bicubic"
    if listed.returncode != 0:
        assert "could not list the models" in res.stderr


@pytest.mark.qgis
@needs_qgis
def test_qgis_model_enum_falls_back_with_a_log_message(qgis_env):
    env = dict(qgis_env["env"], GEOSR_EXECUTABLE="/bin/false")  # a program that always fails
    res = qgis_process(qgis_env, "--json", "help", "geosr:upscale", env=env)
    assert res.returncode == 0, res.stderr
    options = json.loads(res.stdout)["parameters"]["MODEL"]["raw_definition"]["options"]
    assert options == ["bicubic", "bilinear", "lanczos", "nearest"]
    assert "could not list the models with 'geosr models --json'" in res.stderr


@pytest.mark.qgis
@needs_qgis
def test_qgis_info_reports_gsd_map_scale_print_size(qgis_env, make_geotiff, tmp_path):
    from affine import Affine

    src = make_geotiff("in.tif", bands=1, height=30, width=50,
                       transform=Affine(0.25, 0, 600000.0, 0, -0.25, 5000000.0))
    report = tmp_path / "info.html"
    out = qgis_json(qgis_env, "run", "geosr:info", "--", f"INPUT={src}", "DPI=300",
                    f"OUTPUT={report}")
    r = out["results"]
    assert r["GSD_X"] == pytest.approx(0.25) and r["GSD_Y"] == pytest.approx(0.25)
    assert r["MAP_SCALE"] == pytest.approx(0.25 / (METRES_PER_INCH / 300))
    assert r["PRINT_WIDTH_CM"] == pytest.approx(50 / 300 * 2.54)
    assert r["PRINT_HEIGHT_CM"] == pytest.approx(30 / 300 * 2.54)
    assert json.loads(r["JSON"])["gsd_m"] == [0.25, 0.25]
    page = report.read_text(encoding="utf-8")
    assert "GSD 0.25 × 0.25 m" in page and "1:2,953 at 300 dpi" in page


@pytest.mark.qgis
@needs_qgis
def test_qgis_scale_calculator(qgis_env):
    r = qgis_json(qgis_env, "run", "geosr:scale", "--", "GSD=0.5", "DPI=300")["results"]
    assert r["SCALE_DENOMINATOR"] == pytest.approx(0.5 / (METRES_PER_INCH / 300))
    r = qgis_json(qgis_env, "run", "geosr:scale", "--", "MAP_SCALE=2500", "DPI=600")["results"]
    assert r["GSD_M"] == pytest.approx(2500 * METRES_PER_INCH / 600)
    res = qgis_process(qgis_env, "run", "geosr:scale", "--", "DPI=300")
    assert res.returncode != 0 and "give exactly one of GSD" in res.stdout + res.stderr


@pytest.mark.qgis
@needs_qgis
def test_qgis_missing_executable_is_a_clear_error(qgis_env, make_geotiff):
    src = make_geotiff("in.tif", bands=1, height=16, width=16)
    env = {k: v for k, v in qgis_env["env"].items() if k != "GEOSR_EXECUTABLE"}
    env["PATH"] = "/usr/bin:/bin"  # QGIS is there, geosr is not
    assert shutil.which("geosr", path=env["PATH"]) is None
    res = qgis_process(qgis_env, "run", "geosr:info", "--", f"INPUT={src}", env=env)
    assert res.returncode != 0
    assert "the geosr executable was not found" in res.stdout + res.stderr
    assert "GEOSR_EXECUTABLE" in res.stdout + res.stderr


@pytest.mark.qgis
@needs_qgis
def test_qgis_processing_setting_wins_over_environment(qgis_env, tmp_path):
    """``geosr qgis install --executable`` records the Processing setting; it comes first."""
    qdir = tmp_path / "qgis"
    env = dict(qgis_env["env"], QGIS_CUSTOM_CONFIG_PATH=str(qdir))
    done = subprocess.run([qgis_env["exe"], "qgis", "install", "--executable",
                           qgis_env["exe"]], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    # saves one `geosr models --json` (seconds): same executable, so the same answer
    shared = qgis_env["base"] / "qgis" / "profiles" / "default" / "geosr"
    if shared.is_dir():
        shutil.copytree(shared, qdir / "profiles" / "default" / "geosr", dirs_exist_ok=True)
    env["GEOSR_EXECUTABLE"] = "/bin/false"  # would fail if it were used
    r = qgis_json(qgis_env, "run", "geosr:scale", "--", "GSD=1", env=env)
    assert r["results"]["SCALE_DENOMINATOR"] == pytest.approx(1 / (METRES_PER_INCH / 300))
    assert any("from Processing setting GEOSR_EXECUTABLE" in line
               for line in r["log"]["info"])


@pytest.mark.qgis
@needs_qgis
def test_qgis_cancel_stops_the_cli_and_leaves_no_output(qgis_env, tmp_path):
    if subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True,
                      timeout=60).returncode != 0:
        pytest.skip(f"{QGIS_PYTHON} cannot import qgis.core (python3-qgis missing)")
    src = big_geotiff(tmp_path / "big.tif")
    outdir = tmp_path / "out"
    outdir.mkdir()
    dst = outdir / "up.tif"
    # what a killed run (Windows, or a CLI deaf to SIGTERM) leaves; the provider removes it
    stale = outdir / ".up.tif.geosr-0badc0de.tmp.tif"
    stale.write_bytes(b"partial")
    res = subprocess.run([QGIS_PYTHON, str(SCRIPTS / "cancel_upscale.py"),
                          str(qgis_env["plugins"]), str(src), str(dst)],
                         env=qgis_env["env"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["progress"], report  # cancelled only after a real progress event
    assert report["canceled"] and not report["ok"], report
    assert report["progress"][0] < 100
    assert any("exit code 143" in m for m in report["messages"]), report["messages"]
    assert list(outdir.iterdir()) == []  # neither the output nor a temporary file is left
    assert f"removed the temporary file {stale.name}" in report["messages"]
    assert report["stop_s"] < 30, report
