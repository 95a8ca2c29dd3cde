"""``geosr qgis install|uninstall``: put the geosr Processing plugin into a QGIS profile.

The plugin (``geosr_cli/qgis/geosr_processing``, package data) is copied (or linked) into
``PROFILE/python/plugins/geosr_processing`` and enabled in ``PROFILE/QGIS/QGIS3.ini``
(``[PythonPlugins] geosr_processing=true``), which is where QGIS and ``qgis_process`` read the
list of enabled plugins. ``install`` also records this environment's ``geosr`` script as the
provider's executable setting, because QGIS started from a desktop menu does not see the PATH of
the shell (or virtual environment) where geosr was installed.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

PLUGIN = "geosr_processing"
SETTING_KEY = "Configuration\\GEOSR_EXECUTABLE"  # [Processing] Configuration/GEOSR_EXECUTABLE


def default_qgis_dir() -> Path:
    """QGIS 3's settings root (the folder that holds ``profiles/``) on this platform."""
    custom = os.environ.get("QGIS_CUSTOM_CONFIG_PATH")
    if custom:
        return Path(custom)
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "QGIS" / "QGIS3"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "QGIS" / "QGIS3"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "QGIS" / "QGIS3"


def plugin_source() -> Path:
    """The plugin folder shipped inside the installed ``geosr_cli`` package."""
    from importlib.resources import files

    from geosr.errors import InputError

    src = files("geosr_cli") / "qgis" / PLUGIN
    path = Path(str(src))
    if not (path / "metadata.txt").is_file():
        raise InputError(f"the QGIS plugin files are missing from the geosr installation "
                         f"({path}); reinstall geosr (pip install --force-reinstall geosr)")
    return path


def profile_dir(qgis_dir: Path | None, profile: str) -> Path:
    return (qgis_dir or default_qgis_dir()) / "profiles" / profile


def set_ini_value(ini: Path, section: str, key: str, value: str | None) -> None:
    """Set (or with ``value=None`` remove) ``key`` in ``[section]`` of a QSettings INI file.

    Edits lines in place instead of round-tripping through configparser, which would rewrite
    QSettings' own syntax (``@Variant(...)``, escaped keys, case) for every other setting.
    """
    lines = ini.read_text(encoding="utf-8").splitlines() if ini.exists() else []
    header = f"[{section}]"
    out: list[str] = []
    in_section = found_section = done = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if in_section and not done and value is not None:
                _insert_before_blank(out, f"{key}={value}")
                done = True
            in_section = stripped == header
            found_section = found_section or in_section
        elif in_section and "=" in stripped and stripped.split("=", 1)[0].strip() == key:
            if value is not None and not done:
                out.append(f"{key}={value}")
                done = True
            continue
        out.append(line)
    if value is not None and not done:
        if in_section:
            _insert_before_blank(out, f"{key}={value}")
        elif not found_section:
            if out and out[-1].strip():
                out.append("")
            out += [header, f"{key}={value}"]
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text("\n".join(out) + "\n", encoding="utf-8")


def _insert_before_blank(out: list[str], line: str) -> None:
    i = len(out)
    while i > 0 and not out[i - 1].strip():
        i -= 1
    out.insert(i, line)


def _remove_existing(target: Path) -> None:
    from geosr.errors import OutputError

    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        meta = target / "metadata.txt"
        if not (meta.is_file() and "name=geosr" in meta.read_text(encoding="utf-8", errors="replace")):
            raise OutputError(f"{target} exists and is not the geosr plugin; move it away, then "
                              f"run 'geosr qgis install' again")
        shutil.rmtree(target)


def _current_executable() -> str | None:
    """The ``geosr`` script of the running environment (not a pyenv/asdf shim if avoidable)."""
    import sysconfig

    name = "geosr.exe" if os.name == "nt" else "geosr"
    scripts = Path(sysconfig.get_path("scripts"))
    if (scripts / name).is_file():
        return str(scripts / name)
    found = shutil.which("geosr")
    return str(Path(found).resolve()) if found else None


@click.group()
def qgis() -> None:
    """Install the geosr Processing provider into QGIS."""


_profile_opt = click.option("--profile", default="default", show_default=True,
                            help="QGIS user profile name.")
_dir_opt = click.option("--qgis-dir", type=click.Path(file_okay=False, path_type=Path),
                        default=None,
                        help="QGIS 3 settings folder holding profiles/ [default: "
                             "$QGIS_CUSTOM_CONFIG_PATH or ~/.local/share/QGIS/QGIS3 "
                             "(Linux), ~/Library/Application Support/QGIS/QGIS3 (macOS), "
                             "%APPDATA%/QGIS/QGIS3 (Windows)].")


@qgis.command()
@_profile_opt
@_dir_opt
@click.option("--link", is_flag=True,
              help="Symlink the plugin to the installed package instead of copying it "
                   "(for development: edits show up after a QGIS restart).")
@click.option("--executable", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="geosr executable QGIS should run [default: this environment's geosr].")
@click.option("--no-executable", is_flag=True,
              help="Do not record an executable; QGIS then uses $GEOSR_EXECUTABLE or PATH.")
def install(profile: str, qgis_dir: Path | None, link: bool, executable: Path | None,
            no_executable: bool) -> None:
    """Copy (or link) the plugin into a QGIS profile and enable it."""
    from geosr.errors import InputError, OutputError

    src = plugin_source()
    if qgis_dir is not None and not qgis_dir.is_dir():  # a typo would grow a profile tree
        raise InputError(f"--qgis-dir {str(qgis_dir)!r} does not exist; give the QGIS 3 "
                         "settings folder (the one holding profiles/), or leave --qgis-dir out "
                         "for the default")
    pdir = profile_dir(qgis_dir, profile)
    plugins = pdir / "python" / "plugins"
    target = plugins / PLUGIN
    try:
        plugins.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            _remove_existing(target)
        if link:
            target.symlink_to(src, target_is_directory=True)
        else:
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        ini = pdir / "QGIS" / "QGIS3.ini"
        set_ini_value(ini, "PythonPlugins", PLUGIN, "true")
        exe = None
        if not no_executable:
            exe = str(executable.expanduser().resolve()) if executable else _current_executable()
            if executable is not None and not os.access(exe, os.X_OK):
                raise InputError(f"--executable {executable} is not an executable file; give "
                                 f"the path of the 'geosr' script")
            if exe:
                set_ini_value(ini, "Processing", SETTING_KEY, Path(exe).as_posix())
    except OSError as err:
        if isinstance(err, OutputError):
            raise
        hint = " (symlinks may need admin rights on Windows; drop --link)" if link else ""
        raise OutputError(f"could not install the QGIS plugin into {plugins}: {err}{hint}") \
            from err
    click.echo(f"{'linked' if link else 'copied'} {src} -> {target}")
    click.echo(f"enabled {PLUGIN} in {ini}")
    if exe:
        click.echo(f"geosr executable for QGIS: {exe}")
    click.echo("restart QGIS; the algorithms are in the Processing Toolbox under 'geosr'")


@qgis.command()
@_profile_opt
@_dir_opt
def uninstall(profile: str, qgis_dir: Path | None) -> None:
    """Remove the plugin from a QGIS profile and disable it."""
    from geosr.errors import OutputError

    pdir = profile_dir(qgis_dir, profile)
    target = pdir / "python" / "plugins" / PLUGIN
    ini = pdir / "QGIS" / "QGIS3.ini"
    removed = target.exists() or target.is_symlink()
    try:
        if removed:
            _remove_existing(target)
        if ini.exists():
            set_ini_value(ini, "PythonPlugins", PLUGIN, None)
            set_ini_value(ini, "Processing", SETTING_KEY, None)
    except OSError as err:
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"could not remove {target}: {err}; close QGIS and retry") from err
    click.echo(f"removed {target}" if removed else f"{target} was not installed")
