"""The geosr Processing algorithms; each one runs the ``geosr`` CLI in a subprocess."""
from __future__ import annotations

import html
import json
import os
from typing import Optional

from qgis.core import (
    Qgis,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .provider import configured_executable, log
from .runner import FALLBACK_MODELS, GeosrCliError, find_executable, run_geosr

HELP_URL = "https://github.com/geosr/geosr/blob/main/docs/qgis.md"


def _fail(feedback, message: str) -> QgsProcessingException:
    """The exception to raise for ``message``: QGIS reports it in the algorithm log (red)
    itself, so it is not reported here as well (that printed every error several times)."""
    return QgsProcessingException(message)


def resolve_executable(feedback) -> str:
    try:
        path, where = find_executable(configured_executable())
    except GeosrCliError as err:
        log(str(err), Qgis.Critical)
        raise _fail(feedback, str(err)) from None
    feedback.pushInfo(f"geosr executable: {path} (from {where})")
    return path


def raster_path(alg: QgsProcessingAlgorithm, parameters, name: str, context, feedback) -> str:
    """The file behind a raster layer parameter; geosr reads files (and GDAL /vsi paths) only."""
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None:
        raise _fail(feedback, f"{name}: no raster layer given; choose a GeoTIFF layer or file")
    source = layer.source()
    path = source.split("|")[0]
    if layer.providerType() != "gdal" or not (os.path.isfile(path) or path.startswith("/vsi")):
        raise _fail(feedback, f"{name}: layer '{layer.name()}' is not a raster file "
                              f"(source: {source}); export it first (Export > Save As... GeoTIFF)")
    return path


def run_checked(exe: str, args: list, feedback, *, progress: bool = False):
    """Run ``geosr *args`` with the feedback wired in; raise QgsProcessingException on failure."""
    feedback.pushCommandInfo(" ".join([exe, *[_quote(a) for a in args]]))

    def on_progress(fraction: float) -> None:
        feedback.setProgress(max(0.0, min(100.0, 100.0 * fraction)))

    res = run_geosr(exe, args, on_progress=on_progress if progress else None,
                    on_log=feedback.pushConsoleInfo, is_canceled=feedback.isCanceled)
    if res.canceled:
        raise QgsProcessingException(
            f"cancelled: geosr was stopped (exit code {res.returncode}); no output was written")
    if res.returncode != 0:
        msg = res.error or (res.log[-1].strip() if res.log else "")
        raise _fail(feedback, f"geosr {args[0]} failed (exit code {res.returncode})"
                              + (f": {msg}" if msg else ""))
    return res


def _quote(a) -> str:
    s = str(a)
    return f'"{s}"' if (" " in s or not s) else s


def _flatten(obj, prefix: str = "") -> list:
    """``[(dotted.key, value)]`` of a JSON object, with short lists kept as one value."""
    rows = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        for i, v in enumerate(obj):
            rows += _flatten(v, f"{prefix}[{i}]")
    elif obj is not None and obj != [] and not (isinstance(obj, list)
                                                  and all(v is None for v in obj)):
        rows.append((prefix, obj))
    return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, list):
        return " × ".join(_fmt(v) for v in value) if len(value) == 2 else \
            ", ".join(_fmt(v) for v in value)
    return "" if value is None else str(value)


def json_to_text(payload) -> str:
    return "\n".join(f"{k}: {_fmt(v)}" for k, v in _flatten(payload))


def info_summary(payload) -> str:
    """One line: GSD, map scale and print size from ``geosr info --json``."""
    parts = []
    gsd = payload.get("gsd_m")
    if gsd:
        parts.append(f"GSD {_fmt(gsd)} m")
    denom, dpi = payload.get("map_scale_denominator"), payload.get("dpi")
    if denom:
        parts.append(f"largest map scale 1:{denom:,.0f} at {dpi:g} dpi")
    src_gsd = payload.get("source_gsd_m")
    if payload.get("is_geosr_output") and src_gsd and src_gsd != gsd:
        src_denom = payload.get("source_map_scale_denominator")
        parts.append(f"nominal: {payload.get('scale_factor')}x {payload.get('model')} of "
                     f"{_fmt(src_gsd)} m imagery"
                     + (f", whose detail supports 1:{src_denom:,.0f}" if src_denom else ""))
    cm = payload.get("print_size_cm")
    if cm and len(cm) == 2:
        parts.append(f"print size {cm[0]:.3g} × {cm[1]:.3g} cm")
    return "; ".join(parts)


def json_to_html(title: str, payload, summary: str = "") -> str:
    head = f"<p><b>{html.escape(summary)}</b></p>\n" if summary else ""
    rows = "\n".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
                     for k, v in _flatten(payload))
    return (f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h2>{html.escape(title)}</h2>\n{head}<table border='1' cellpadding='4' "
            f"style='border-collapse:collapse'>\n{rows}\n</table></body></html>\n")


def _item(payload, key: str, index: Optional[int] = None) -> Optional[float]:
    """``payload[key]`` (or ``payload[key][index]``) as a float; None where absent."""
    value = payload.get(key) if isinstance(payload, dict) else None
    if index is not None:
        value = value[index] if isinstance(value, list) and len(value) > index else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _remove_leftovers(dst: str, feedback) -> None:
    """Temporary files of a run that had to be killed (no SIGTERM cleanup: Windows, or a CLI
    that did not stop within 30 s). geosr names them ``.<output name>.geosr-<id>.*.tif``."""
    folder, name = os.path.split(os.path.abspath(dst))
    prefix = f".{name}.geosr-"
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if entry.startswith(prefix) and entry.endswith(".tif"):
            try:
                os.remove(os.path.join(folder, entry))
                feedback.pushInfo(f"removed the temporary file {entry}")
            except OSError:
                pass


class _GeosrAlgorithm(QgsProcessingAlgorithm):
    def group(self) -> str:
        return ""

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return ""

    def helpUrl(self) -> str:  # noqa: N802 - QGIS API
        return HELP_URL

    def tags(self) -> list:
        return ["geosr", "super-resolution", "raster", "gsd"]


class UpscaleAlgorithm(_GeosrAlgorithm):
    """``geosr:upscale``: runs ``geosr upscale IN OUT --progress json ...``."""

    INPUT, MODEL, SCALE, TARGET_GSD, WEIGHTS, TILE, DEVICE, COG, OUTPUT = (
        "INPUT", "MODEL", "SCALE", "TARGET_GSD", "WEIGHTS", "TILE", "DEVICE", "COG", "OUTPUT")
    AOI, AOI_CROP = "AOI", "AOI_CROP"
    #: geosr upscale --aoi-crop choices (geosr.aoi.AOI_CROPS; the plugin never imports geosr)
    AOI_CROPS = ["polygon", "envelope"]

    def __init__(self, models: Optional[list] = None) -> None:
        super().__init__()
        self._models = list(models or FALLBACK_MODELS)

    def name(self) -> str:
        return "upscale"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return "Upscale raster (super-resolution)"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return ("Makes a raster SCALE times finer with a classical interpolator or a trained "
                "super-resolution network. The output keeps the CRS and bounds; its pixel size "
                "is the input's divided by SCALE. Runs the geosr command-line program "
                "(Settings > Options > Processing > Providers > geosr, $GEOSR_EXECUTABLE or "
                "PATH).\n\nTILE: tile size in input pixels (0 = automatic). DEVICE: auto, cpu, "
                "cuda, cuda:1, mps. WEIGHTS: a .safetensors/.pth file for the chosen network.\n\n"
                "AOI: a polygon layer (any CRS; selected features only if so chosen): only its "
                "envelope, snapped to the input's pixels, is super-resolved; pixels outside the "
                "polygons are nodata unless AOI_CROP is envelope.")

    def createInstance(self):  # noqa: N802 - QGIS API
        return UpscaleAlgorithm(self._models)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        default = "bicubic" if "bicubic" in self._models else self._models[0]
        self.addParameter(QgsProcessingParameterEnum(
            self.MODEL, "Model", options=self._models, defaultValue=default,
            usesStaticStrings=True))
        # any factor > 1 (geosr upscale --scale; non-integer factors need an arbitrary-scale
        # model, which geosr names when it refuses one)
        self.addParameter(QgsProcessingParameterNumber(
            self.SCALE, "Scale factor (any factor > 1, e.g. 2 or 2.5)",
            QgsProcessingParameterNumber.Double, defaultValue=2, minValue=1, maxValue=64))
        self.addParameter(QgsProcessingParameterNumber(
            self.TARGET_GSD, "Exact output pixel size in metres instead (0 = use the scale)",
            QgsProcessingParameterNumber.Double, defaultValue=0, minValue=0, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.WEIGHTS, "Weights file (optional)", optional=True,
            fileFilter="Weights (*.safetensors *.pth *.pt *.ckpt);;All files (*)"))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE, "Tile size in input pixels (0 = automatic)",
            QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0, optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.DEVICE, "Device (auto, cpu, cuda, cuda:N, mps)", defaultValue="auto",
            optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.COG, "Write a Cloud Optimized GeoTIFF", defaultValue=False))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.AOI, "Area of interest (optional polygon layer)",
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.AOI_CROP, "Outside the AOI polygons (within its envelope)",
            options=self.AOI_CROPS, defaultValue=self.AOI_CROPS[0], usesStaticStrings=True,
            optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Upscaled"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        exe = resolve_executable(feedback)
        src = raster_path(self, parameters, self.INPUT, context, feedback)
        model = self.parameterAsEnumString(parameters, self.MODEL, context)
        scale = self.parameterAsDouble(parameters, self.SCALE, context)
        target_gsd = self.parameterAsDouble(parameters, self.TARGET_GSD, context) \
            if parameters.get(self.TARGET_GSD) is not None else 0.0
        weights = self.parameterAsFile(parameters, self.WEIGHTS, context)
        tile = self.parameterAsInt(parameters, self.TILE, context) \
            if parameters.get(self.TILE) is not None else 0
        device = (self.parameterAsString(parameters, self.DEVICE, context) or "").strip()
        cog = self.parameterAsBool(parameters, self.COG, context)
        dst = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)

        # QGIS has already confirmed overwriting a chosen file; temporary outputs are new.
        args = ["upscale", src, dst, "--model", model, "--progress", "json", "--overwrite"]
        args += (["--target-gsd", f"{target_gsd:.17g}"] if target_gsd > 0 else
                 ["--scale", f"{scale:.17g}"])
        if weights:
            args += ["--weights", weights]
        if tile and tile > 0:
            args += ["--tile", tile]
        if device and device != "auto":
            args += ["--device", device]
        if cog:
            args += ["--cog"]
        if parameters.get(self.AOI):
            args += ["--aoi", self._aoi_file(parameters, context, feedback),
                     "--aoi-crop", self.parameterAsEnumString(parameters, self.AOI_CROP, context)
                     or self.AOI_CROPS[0]]
        try:
            res = run_checked(exe, args, feedback, progress=True)
        except QgsProcessingException:
            if feedback.isCanceled():
                _remove_leftovers(dst, feedback)
            raise
        done = res.done_event or {}
        out = done.get("output") or dst
        if not os.path.exists(out):
            raise _fail(feedback, f"geosr upscale finished but {out} does not exist")
        feedback.setProgress(100)
        return {self.OUTPUT: out}

    def _aoi_file(self, parameters, context, feedback) -> str:
        """The AOI as a file geosr reads: the layer's own GeoJSON or GeoPackage file, else
        (other formats, memory layers, selected features only) a GeoPackage QGIS exports;
        ``FILE.gpkg#LAYER`` names the layer (geosr upscale --aoi)."""
        path, layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, self.AOI, context, ["gpkg", "geojson", "json"], "gpkg", feedback)
        if not path:
            raise _fail(feedback, "AOI: the layer could not be read or exported; save it as a "
                                  "GeoPackage or GeoJSON file first")
        path = path.split("|")[0]
        if layer and path.lower().endswith(".gpkg"):
            return f"{path}#{layer}"
        return path


class InfoAlgorithm(_GeosrAlgorithm):
    """``geosr:info``: GSD, map scale and print size of a raster (``geosr info --json``)."""

    INPUT, DPI, OUTPUT = "INPUT", "DPI", "OUTPUT"

    def name(self) -> str:
        return "info"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return "Raster GSD, map scale and print size"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return ("Reports the ground sampling distance (metres on the ground per pixel), the "
                "largest map scale at which the raster prints one pixel per dot at DPI, and "
                "its print size at DPI (runs 'geosr info PATH --dpi DPI --json').")

    def createInstance(self):  # noqa: N802 - QGIS API
        return InfoAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterNumber(
            self.DPI, "Print resolution (DPI)", QgsProcessingParameterNumber.Double,
            defaultValue=300.0, minValue=1.0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, "Report", fileFilter="HTML files (*.html)", optional=True,
            createByDefault=True))
        self.addOutput(QgsProcessingOutputString("JSON", "geosr info as JSON"))
        self.addOutput(QgsProcessingOutputString("TEXT", "Report as text"))
        self.addOutput(QgsProcessingOutputNumber("GSD_X", "GSD in metres (x)"))
        self.addOutput(QgsProcessingOutputNumber("GSD_Y", "GSD in metres (y)"))
        self.addOutput(QgsProcessingOutputNumber(
            "MAP_SCALE", "Largest map scale denominator at one pixel per dot"))
        self.addOutput(QgsProcessingOutputNumber("PRINT_WIDTH_CM", "Print width at DPI (cm)"))
        self.addOutput(QgsProcessingOutputNumber("PRINT_HEIGHT_CM", "Print height at DPI (cm)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        exe = resolve_executable(feedback)
        src = raster_path(self, parameters, self.INPUT, context, feedback)
        dpi = self.parameterAsDouble(parameters, self.DPI, context)
        res = run_checked(exe, ["info", src, "--dpi", f"{dpi:g}", "--json"], feedback)
        try:
            payload = json.loads(res.stdout)
        except ValueError as err:
            raise _fail(feedback, f"geosr info did not print JSON ({err}); is {exe} a recent "
                                  f"geosr?") from None
        summary = info_summary(payload)
        text = summary + "\n\n" + json_to_text(payload)
        feedback.pushInfo(text)
        results = {"JSON": json.dumps(payload), "TEXT": text,
                   "GSD_X": _item(payload, "gsd_m", 0), "GSD_Y": _item(payload, "gsd_m", 1),
                   "MAP_SCALE": _item(payload, "map_scale_denominator"),
                   "PRINT_WIDTH_CM": _item(payload, "print_size_cm", 0),
                   "PRINT_HEIGHT_CM": _item(payload, "print_size_cm", 1)}
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if out:
            with open(out, "w", encoding="utf-8") as f:
                f.write(json_to_html(f"geosr info: {os.path.basename(src)}", payload, summary))
            results[self.OUTPUT] = out
        return results


class ScaleAlgorithm(_GeosrAlgorithm):
    """``geosr:scale``: GSD ↔ map scale at a DPI (``geosr scale ... --json``)."""

    GSD, MAP_SCALE, DPI, OUTPUT = "GSD", "MAP_SCALE", "DPI", "OUTPUT"

    def name(self) -> str:
        return "scale"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return "GSD / map scale / DPI calculator"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return ("Give the GSD (metres per pixel) to get the largest map scale it prints at one "
                "pixel per dot, or a map scale denominator (2500 for 1:2500) to get the GSD "
                "needed to print it, at DPI dots per inch: 1 : GSD / (0.0254 / DPI). "
                "Runs 'geosr scale --gsd M | --scale-denominator N --dpi D --json'.")

    def createInstance(self):  # noqa: N802 - QGIS API
        return ScaleAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD, "GSD (metres per pixel)", QgsProcessingParameterNumber.Double,
            optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MAP_SCALE, "Map scale denominator (1:N)", QgsProcessingParameterNumber.Double,
            optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.DPI, "Print resolution (DPI)", QgsProcessingParameterNumber.Double,
            defaultValue=300.0, minValue=1.0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, "Report", fileFilter="HTML files (*.html)", optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("GSD_M", "GSD in metres"))
        self.addOutput(QgsProcessingOutputNumber("SCALE_DENOMINATOR", "Map scale denominator"))
        self.addOutput(QgsProcessingOutputString("JSON", "geosr scale as JSON"))
        self.addOutput(QgsProcessingOutputString("TEXT", "Result as text"))

    def _given(self, parameters, name: str, context) -> Optional[float]:
        if parameters.get(name) in (None, ""):
            return None
        value = self.parameterAsDouble(parameters, name, context)
        return value if value > 0 else None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        gsd = self._given(parameters, self.GSD, context)
        denom = self._given(parameters, self.MAP_SCALE, context)
        if (gsd is None) == (denom is None):
            raise _fail(feedback, "give exactly one of GSD (to get the map scale) and "
                                  "MAP_SCALE (to get the GSD), e.g. GSD=0.5 DPI=300")
        exe = resolve_executable(feedback)
        dpi = self.parameterAsDouble(parameters, self.DPI, context)
        args = ["scale", "--gsd", f"{gsd!r}"] if gsd is not None else \
            ["scale", "--scale-denominator", f"{denom!r}"]
        res = run_checked(exe, args + ["--dpi", f"{dpi!r}", "--json"], feedback)
        try:
            payload = json.loads(res.stdout)
        except ValueError as err:
            raise _fail(feedback, f"geosr scale did not print JSON ({err})") from None
        summary = (f"GSD {_fmt(payload.get('gsd_m'))} m at {_fmt(payload.get('dpi'))} dpi "
                   f"<-> map scale 1:{payload.get('scale_denominator', 0):,.0f} "
                   f"(one pixel per printed dot)")
        text = summary + "\n\n" + json_to_text(payload)
        feedback.pushInfo(text)
        results = {"JSON": json.dumps(payload), "TEXT": text,
                   "GSD_M": _item(payload, "gsd_m"),
                   "SCALE_DENOMINATOR": _item(payload, "scale_denominator")}
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if out:
            with open(out, "w", encoding="utf-8") as f:
                f.write(json_to_html("geosr scale", payload, summary))
            results[self.OUTPUT] = out
        return results
