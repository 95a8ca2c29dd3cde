"""QGIS plugin entry point: a Processing provider that runs the ``geosr`` command-line program.

Nothing here imports geosr or torch: QGIS's Python has neither, the CLI runs in its own
environment (see ``runner.py``).
"""


def classFactory(iface):  # noqa: N802 - name fixed by QGIS
    """Called by QGIS (``iface`` is None under ``qgis_process``)."""
    from .plugin import GeosrProcessingPlugin

    return GeosrProcessingPlugin(iface)
