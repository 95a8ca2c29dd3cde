"""Regenerates docs/img/qgis_upscale_dialog.png (run by hand, not by the tests).

Runs inside the QGIS desktop application, with the plugin installed (``geosr qgis install``)::

    SHOT_INPUT=some.tif SHOT_OUT=docs/img/qgis_upscale_dialog.png PATH=/usr/bin:/bin:$PATH \\
        xvfb-run -a -s "-screen 0 1280x800x24" qgis.bin --noversioncheck --nologo \\
        --code tests/cli/qgis_scripts/screenshot.py
"""
import os

import processing
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer

OUT = os.environ["SHOT_OUT"]
layer = QgsRasterLayer(os.environ["SHOT_INPUT"], "aerial_25cm")
QgsProject.instance().addMapLayer(layer)


def open_dialog():
    dlg = processing.createAlgorithmDialog(
        "geosr:upscale", {"INPUT": layer, "SCALE": 4, "MODEL": "bicubic"})
    dlg.resize(820, 560)
    dlg.show()

    def save():
        dlg.grab().save(OUT)
        QgsApplication.exit(0)

    QTimer.singleShot(4000, save)  # let the dialog lay out and paint


QTimer.singleShot(5000, open_dialog)  # after QGIS has loaded the plugins
