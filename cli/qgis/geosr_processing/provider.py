"""The ``geosr`` Processing provider: settings, model list, algorithms."""
from __future__ import annotations

import os
import sys
from typing import Optional

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProcessingProvider, QgsSettings
from qgis.PyQt.QtGui import QIcon

from .runner import SETTING_NAME, GeosrCliError, find_executable, list_models

LOG_TAG = "geosr"
_ICON = os.path.join(os.path.dirname(__file__), "icon.svg")


def configured_executable() -> str:
    """The executable path from Settings > Options > Processing > Providers > geosr ('' = unset).

    Read from QgsSettings at every call (not cached by ProcessingConfig) so a value set after
    QGIS started, or written by ``geosr qgis install``, is used.
    """
    value = QgsSettings().value(f"Processing/Configuration/{SETTING_NAME}", "")
    return str(value or "")


def log(message: str, level=Qgis.Info) -> None:
    """To the Log Messages panel (tab "geosr") and stderr, where ``qgis_process`` users see it."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)
    print(f"geosr: {message}", file=sys.stderr, flush=True)


class GeosrProvider(QgsProcessingProvider):
    """Provider ``geosr``: ``geosr:upscale``, ``geosr:info``, ``geosr:scale``."""

    def __init__(self) -> None:
        super().__init__()
        self._models: Optional[list] = None

    def id(self) -> str:
        return "geosr"

    def name(self) -> str:
        return "geosr"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        return "geosr super-resolution"

    def icon(self) -> QIcon:
        return QIcon(_ICON)

    def load(self) -> bool:
        # The settings page entry; Processing's Python plugin may be absent in exotic builds, in
        # which case the setting can still be written to QgsSettings by hand.
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting

            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(Setting(
                self.name(), SETTING_NAME,
                "geosr executable (empty: $GEOSR_EXECUTABLE, then PATH)", "",
                valuetype=Setting.FILE))
            ProcessingConfig.readSettings()
        except ImportError:  # pragma: no cover - processing plugin missing
            pass
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        try:
            from processing.core.ProcessingConfig import ProcessingConfig

            ProcessingConfig.removeSetting(SETTING_NAME)
        except (ImportError, KeyError):  # pragma: no cover
            pass

    def models(self) -> list:
        """Model names for ``geosr:upscale`` (asked once per provider refresh)."""
        if self._models is None:
            try:
                exe: Optional[str] = find_executable(configured_executable())[0]
            except GeosrCliError as err:
                exe = None
                log(str(err), Qgis.Critical)
            cache = os.path.join(QgsApplication.qgisSettingsDirPath(), "geosr",
                                 "models-cache.json")
            names, problem = list_models(exe, cache_path=cache)
            if problem:
                log(f"could not list the models with 'geosr models --json' ({problem}); "
                    f"offering the classical interpolators only: {', '.join(names)}",
                    Qgis.Warning)
            self._models = names
        return self._models

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        from .algorithms import InfoAlgorithm, ScaleAlgorithm, UpscaleAlgorithm

        self._models = None  # a refresh re-asks the CLI (e.g. after installing weights)
        for alg in (UpscaleAlgorithm(self.models()), InfoAlgorithm(), ScaleAlgorithm()):
            self.addAlgorithm(alg)

    # geosr writes GeoTIFF (or COG) only
    def supportedOutputRasterLayerExtensions(self) -> list:  # noqa: N802 - QGIS API
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:  # noqa: N802 - QGIS API
        return "tif"
