"""Speed of 1 vs 2 local dask workers against the single-process run (CPU, table in
docs/distributed.md).

    python docs/bench_distributed.py 256     # edge of the square test image in LR pixels

EDSR-baseline x2 with random weights (no download), tile/block 64. Both clusters are started and
warmed up (model shipped to the workers) before timing; then single / 1 worker / 2 workers are
run in turn three times and the medians printed as JSON. Cluster keys are
``<workers>x<torch threads per worker>``. Every output is checked to be
bit-identical to the single-process one.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine


def main() -> None:
    from geosr.distributed import start_local_cluster
    from geosr.engine import upscale_file

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    d = Path(tempfile.mkdtemp(prefix="geosr-bench-"))
    data = (np.random.default_rng(0).random((3, n, n)) * 255).astype(np.uint8)
    src = d / "in.tif"
    with rasterio.open(src, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(1, 0, 5e5, 0, -1, 4e6), tiled=True,
                       blockxsize=128, blockysize=128) as ds:
        ds.write(data)
    kw = dict(model="edsr-baseline", scale=2, tile=64, block=64, allow_random_weights=True,
              overwrite=True)
    # (workers, torch threads per worker)
    configs = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}
    clusters = {k: start_local_cluster(w, device="cpu", torch_threads=t)
                for k, (w, t) in configs.items()}
    runs: dict[str, list[float]] = {"single": [], **{k: [] for k in configs}}
    try:
        for k, (_, client) in clusters.items():
            client.wait_for_workers(configs[k][0])
            torch.manual_seed(0)
            upscale_file(src, d / f"warm{k}.tif", client=client, **kw)
        for _ in range(3):
            for key in runs:
                torch.manual_seed(0)
                client = None if key == "single" else clusters[key][1]
                t = time.perf_counter()
                upscale_file(src, d / f"o_{key}.tif", client=client, **kw)
                runs[key].append(round(time.perf_counter() - t, 2))
        with rasterio.open(d / "o_single.tif") as ds:
            ref = ds.read()
        for w in configs:
            with rasterio.open(d / f"o_{w}.tif") as ds:
                assert np.array_equal(ds.read(), ref), f"{w} worker(s): output differs"
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    print(json.dumps({k: {"runs": v, "median": statistics.median(v)} for k, v in runs.items()}))


if __name__ == "__main__":
    main()
