"""Registers the geosr Processing provider with QGIS (desktop and ``qgis_process``)."""
from __future__ import annotations

from qgis.core import QgsApplication


class GeosrProcessingPlugin:
    """Adds the provider on ``initProcessing`` (qgis_process) or ``initGui`` (desktop)."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        from .provider import GeosrProvider

        if self.provider is None:
            self.provider = GeosrProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
