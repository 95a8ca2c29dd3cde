"""Run geosr:upscale through QGIS's Processing API and cancel it after the first progress event.

Runs under QGIS's own Python (Debian's /usr/bin/python3 with python3-qgis), headless:
``python3 cancel_upscale.py PLUGINS_DIR INPUT OUTPUT [TILE]``. Prints one JSON object on the
last stdout line: the progress values seen, whether the run succeeded, the algorithm's messages.
"""
import json
import sys
import time

from qgis.core import (QgsApplication, QgsProcessingContext, QgsProcessingFeedback)


class RecordingFeedback(QgsProcessingFeedback):
    """A real QgsProcessingFeedback that also keeps what the algorithm reported."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.messages.append(info)
        super().pushInfo(info)

    def pushConsoleInfo(self, info):  # noqa: N802 - QGIS API
        self.messages.append(info)
        super().pushConsoleInfo(info)

    def reportError(self, error, fatalError=False):  # noqa: N802,N803 - QGIS API
        self.messages.append("ERROR: " + error)
        super().reportError(error, fatalError)


def main():
    plugins_dir, src, dst = sys.argv[1:4]
    tile = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    sys.path.insert(0, plugins_dir)
    from geosr_processing.provider import GeosrProvider

    provider = GeosrProvider()
    assert QgsApplication.processingRegistry().addProvider(provider)
    alg = QgsApplication.processingRegistry().createAlgorithmById("geosr:upscale")
    assert alg is not None, "geosr:upscale is not registered"

    feedback = RecordingFeedback()
    progress = []
    cancel_at = []

    def on_progress(value):
        progress.append(value)
        if not feedback.isCanceled():
            cancel_at.append(time.monotonic())
            feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    params = {"INPUT": src, "MODEL": "bicubic", "SCALE": 2, "TILE": tile, "OUTPUT": dst}
    t0 = time.monotonic()
    results, ok = alg.run(params, QgsProcessingContext(), feedback)
    t1 = time.monotonic()
    report = {"ok": bool(ok), "results": {k: str(v) for k, v in (results or {}).items()},
              "progress": progress, "canceled": feedback.isCanceled(),
              "stop_s": (t1 - cancel_at[0]) if cancel_at else None, "total_s": t1 - t0,
              "messages": feedback.messages}
    QgsApplication.processingRegistry().removeProvider(provider)
    app.exitQgis()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
