"""Super-resolve every GeoTIFF of a folder from a GIS script, then report the GSD honestly.

    python examples/gis_script.py examples/ /tmp/sr_out --scale 2
"""
from __future__ import annotations

import argparse
from pathlib import Path

import geosr
from geosr.geo.info import format_info, raster_info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--model", default=None, help="default: best bundled model for the scale")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(args.src_dir.glob("*.tif")):
        dst = args.out_dir / f"{src.stem}_x{args.scale}.tif"
        try:
            geosr.upscale_file(src, dst, model=args.model, scale=args.scale, overwrite=True)
        except geosr.GeosrError as err:  # one bad file does not stop the others
            print(f"skipped {src.name}: {err}")
            continue
        print(format_info(raster_info(dst, dpi=300)))


if __name__ == "__main__":
    main()
