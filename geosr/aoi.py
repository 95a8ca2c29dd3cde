"""Areas of interest: read an AOI (GeoJSON, GeoPackage layer, WKT or a bounding box), check
and repair its geometry, reproject it to a raster's CRS and snap its envelope outward to the
raster's pixel grid; then, per processing block, whether the block meets the AOI and which of
its output pixels lie outside it.

Two steps, so a many-file run reads the AOI once: :func:`load_aoi` (the AOI on its own, in its
CRS) and :func:`resolve_area` (the AOI against one raster → :class:`Area`, plain picklable data
that travels in the :class:`~geosr.plan.Job`). The job then runs on the window as if it were the
image (a :class:`~geosr.io.read.RasterMeta` of the window with its shifted transform, reads
offset by the window), so an AOI output equals the upscaled ``gdal_translate -srcwin`` crop.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import AOIError, AOIMissError, GeosrWarning
from .geo.grid import bounds_of, window_transform

#: ``--aoi-crop``: ``polygon`` (pixels outside the polygon are nodata) or ``envelope`` (the
#: whole snapped envelope is super-resolved).
AOI_CROPS = ("polygon", "envelope")
#: GeoJSON without a ``crs`` member is WGS 84 longitude/latitude (RFC 7946).
GEOJSON_CRS = "OGC:CRS84"
#: Pixel positions this close to an integer are that integer (reprojection round-off must not
#: grow a window by a whole pixel).
SNAP_EPS = 1e-6
_WKT_TYPES = ("POLYGON", "MULTIPOLYGON", "GEOMETRYCOLLECTION", "POINT", "MULTIPOINT",
              "LINESTRING", "MULTILINESTRING", "SRID=")


@dataclass(frozen=True)
class AOI:
    """An area of interest on its own: a valid polygonal shapely geometry and its CRS (a
    ``pyproj.CRS``; ``None``: the raster's CRS, as for a bare ``--bbox`` or WKT)."""

    geometry: Any
    crs: Any = None
    source: str = "AOI"


@dataclass(frozen=True)
class Area:
    """An AOI resolved against one raster: the pixel window it covers (its envelope snapped
    outward to the grid, clipped to the raster) and the polygon in the window's pixel
    coordinates (x = column, y = row)."""

    row_off: int
    col_off: int
    height: int
    width: int
    geometry: Any
    crop: str = "polygon"

    @property
    def offset(self) -> tuple[int, int]:
        """(row, column) of the window's first pixel in the raster."""
        return self.row_off, self.col_off

    def window_meta(self, meta):
        """The :class:`~geosr.io.read.RasterMeta` of the window: its size and shifted grid."""
        return replace(meta, width=self.width, height=self.height,
                       transform=window_transform(meta.transform, self.col_off, self.row_off,
                                                  1, 1))

    def key(self) -> tuple:
        """What the ``--resume`` journal must tell apart (window, polygon, crop)."""
        import hashlib

        return (self.offset, self.height, self.width, self.crop,
                hashlib.sha256(self.geometry.wkb).hexdigest()[:16])

    def hits(self, blk) -> bool:
        """Whether block ``blk`` (window pixels) must be read and inferred."""
        if self.crop == "envelope":
            return True
        import shapely

        cell = shapely.box(blk.cols.start, blk.rows.start, blk.cols.stop, blk.rows.stop)
        return bool(_prepared(self.geometry).intersects(cell)
                    and self.geometry.intersection(cell).area > 0)

    def outside(self, blk, shape: tuple[int, int], job) -> np.ndarray | None:
        """Which of the ``shape`` output pixels of ``blk`` have their centres outside the
        polygon (True), or None when none has; GDAL's rasterizer decides (pixel-centre rule)."""
        if self.crop == "envelope":
            return None
        import shapely
        from affine import Affine
        from rasterio.features import geometry_mask

        cell = shapely.box(blk.cols.start, blk.rows.start, blk.cols.stop, blk.rows.stop)
        if _prepared(self.geometry).contains_properly(cell):
            return None
        # output pixels in window pixel coordinates: the block's first output pixel and the
        # exact pixel size of each axis (geo.grid.Axis), for any factor
        (r0, _), (c0, _) = job.out_window(blk.rows, blk.cols)
        ya, xa = job.grid_axes
        t = Affine(float(1 / xa.ratio), 0, float(c0 / xa.ratio),
                   0, float(1 / ya.ratio), float(r0 / ya.ratio))
        out = geometry_mask([self.geometry], out_shape=shape, transform=t)
        return out if out.any() else None

    def clear_outside(self, out: np.ndarray, blk, job) -> np.ndarray:
        """``out`` (a block's output) with the pixels outside the polygon made invalid."""
        outside = self.outside(blk, out.shape[-2:], job)
        if outside is None:
            return out
        return _invalidate(out, outside, job)

    def empty_block(self, shape: tuple[int, int], job) -> np.ndarray:
        """The ``shape`` output of a block that misses the polygon: every pixel invalid,
        nothing read nor inferred."""
        out = np.zeros((len(job.bands), *shape), np.dtype(job.meta_out.dtype))
        return _invalidate(out, np.ones(shape, bool), job)


def _invalidate(out: np.ndarray, outside: np.ndarray, job) -> np.ndarray:
    """Outside pixels: the band's nodata value where it has one; else alpha 0 (alpha bands)
    and the per-dataset mask band, which :func:`output_mask` gives outputs without nodata."""
    from .pixels import nodata_in_dtype

    m = job.meta_out
    data = np.ma.getdata(out).copy()
    nodata = [nodata_in_dtype(v, m.dtype) for v in m.nodata_per_band]
    for b in range(data.shape[0]):
        if nodata[b] is not None:
            data[b][outside] = nodata[b]
        else:
            # alpha 0; other bands 0 under the mask band, so the stored values do not depend on
            # whether a block was skipped (zeros) or computed and then masked
            data[b][outside] = 0
    if m.mask == "per_dataset":
        mask = np.ma.getmaskarray(out) | outside[None]
        return np.ma.MaskedArray(data, mask=np.broadcast_to(mask, data.shape).copy())
    return data


def output_mask(meta_out, crop: str):
    """The output metadata for an AOI run: an output whose bands have no nodata value (and no
    alpha band) gets a per-dataset mask band, so pixels outside the polygon are marked without
    claiming a data value (docs/aoi.md)."""
    from .pixels import nodata_in_dtype

    if crop == "envelope" or meta_out.mask is not None:
        return meta_out
    if all(nodata_in_dtype(v, meta_out.dtype) is not None for v in meta_out.nodata_per_band):
        return meta_out
    return replace(meta_out, mask="per_dataset")


def _prepared(geom):
    import shapely

    shapely.prepare(geom)  # in place, once; a no-op when already prepared
    return geom


# -- reading ------------------------------------------------------------------------------------

def load_aoi(aoi: "str | os.PathLike | AOI | None" = None, *, bbox: "str | None" = None) -> AOI:
    """The AOI from ``aoi`` (a GeoJSON file, a GeoPackage ``file.gpkg`` or ``file.gpkg#layer``,
    or WKT text, optionally ``SRID=4326;POLYGON(...)``) or ``bbox``
    (``minx,miny,maxx,maxy[,CRS]``), validated and repaired (:func:`valid_polygon`)."""
    if isinstance(aoi, AOI):
        return aoi
    if (aoi is None) == (bbox is None):
        from .errors import OptionConflictError

        raise OptionConflictError("give either --aoi or --bbox, not both" if aoi is not None
                                  else "no area of interest: give --aoi FILE|WKT or --bbox")
    if bbox is not None:
        geom, crs, source = *parse_bbox(bbox), f"--bbox {bbox}"
    else:
        geom, crs, source = *_read(str(aoi)), str(aoi)
    return AOI(valid_polygon(geom, source=source), crs, source)


def parse_bbox(text: str) -> tuple[Any, Any]:
    """``minx,miny,maxx,maxy[,CRS]`` → (box, CRS or None: the raster's)."""
    import shapely

    parts = [p.strip() for p in str(text).split(",")]
    try:
        x0, y0, x1, y1 = (float(v) for v in parts[:4])
    except ValueError:
        x0 = y0 = x1 = y1 = math.nan
    if len(parts) < 4 or not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise AOIError(f"--bbox {text!r} is not minx,miny,maxx,maxy[,CRS]; e.g. --bbox "
                       "500100,4099000,500400,4099400 (the raster's CRS) or "
                       "--bbox 13.37,52.50,13.42,52.53,EPSG:4326")
    if not (x0 < x1 and y0 < y1):
        raise AOIError(f"--bbox {text!r} is empty: minx must be below maxx and miny below maxy "
                       "(the order is minx,miny,maxx,maxy)")
    crs = _crs(",".join(parts[4:]), text) if len(parts) > 4 else None
    return shapely.box(x0, y0, x1, y1), crs


def _crs(value: Any, where: str):
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(value)
    except CRSError:
        raise AOIError(f"unknown CRS {value!r} in {where!r}; use an EPSG code such as "
                       "EPSG:4326 or a WKT/PROJ definition") from None


def _read(spec: str) -> tuple[Any, Any]:
    path, layer = spec, None
    if not os.path.exists(spec) and "#" in spec and os.path.exists(spec.rsplit("#", 1)[0]):
        path, layer = spec.rsplit("#", 1)
    if os.path.isfile(path):
        ext = os.path.splitext(path)[1].lower()
        if ext in (".gpkg",):
            return read_geopackage(path, layer=layer)
        if ext in (".shp", ".shx", ".dbf"):
            raise AOIError(f"--aoi {spec!r}: Shapefiles are not read directly; convert the layer "
                           f"first: ogr2ogr -f GPKG aoi.gpkg {path} (or -f GeoJSON aoi.geojson)")
        if ext in (".wkt", ".txt"):
            with open(path, encoding="utf-8") as f:
                return _read_wkt(f.read().strip(), spec)
        return read_geojson(path)
    if spec.lstrip().upper().startswith(_WKT_TYPES):
        return _read_wkt(spec.strip(), "--aoi")
    if os.path.isdir(path):
        raise AOIError(f"--aoi {spec!r} is a directory; give a GeoJSON or GeoPackage file")
    raise AOIError(f"--aoi {spec!r} is neither an existing file nor WKT; give a GeoJSON or "
                   "GeoPackage file, or WKT such as 'POLYGON((x y, ...))'")


def _read_wkt(text: str, where: str) -> tuple[Any, Any]:
    import shapely

    crs = None
    if text.upper().startswith("SRID="):
        srid, _, text = text.partition(";")
        crs = _crs(f"EPSG:{srid[5:].strip()}", where)
    try:
        return shapely.from_wkt(text), crs
    except shapely.errors.GEOSException as err:
        raise AOIError(f"{where}: not valid WKT ({err}); write e.g. "
                       "'POLYGON((x0 y0, x1 y0, x1 y1, x0 y1, x0 y0))'") from None


def read_geojson(path: str) -> tuple[Any, Any]:
    """Union of a GeoJSON file's geometries (FeatureCollection, Feature or geometry) and its CRS:
    the legacy ``crs`` member (as GDAL writes for other CRSs) or WGS 84 (RFC 7946)."""
    import shapely
    from shapely.geometry import shape

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AOIError(f"cannot read the AOI {path!r} as GeoJSON ({err}); give a GeoJSON or "
                       "GeoPackage file, or WKT") from None
    if not isinstance(doc, dict):
        raise AOIError(f"{path!r} is not a GeoJSON object; give a FeatureCollection, a Feature "
                       "or a geometry")
    kind = doc.get("type")
    feats = (doc.get("features") or [] if kind == "FeatureCollection" else
             [doc] if kind == "Feature" else [{"geometry": doc}])
    try:
        geoms = [shape(f["geometry"]) for f in feats if isinstance(f, dict) and f.get("geometry")]
    except (KeyError, TypeError, ValueError, AttributeError,
            shapely.errors.GEOSException) as err:
        raise AOIError(f"{path!r} holds a geometry geosr cannot read ({err}); check it with "
                       "ogrinfo or re-export it") from None
    if not geoms:
        raise AOIError(f"{path!r} has no geometries; give a file with at least one polygon")
    crs_name = ((doc.get("crs") or {}).get("properties") or {}).get("name")
    crs = _crs(crs_name, path) if crs_name else _crs(GEOJSON_CRS, path)
    return shapely.GeometryCollection(geoms), crs


def read_geopackage(path: str, *, layer: str | None = None) -> tuple[Any, Any]:
    """Union of a GeoPackage feature layer's geometries and its CRS, read with SQLite (the
    format is SQLite plus a small header before each WKB geometry: no GDAL vector bindings
    needed). ``layer`` defaults to the only feature layer."""
    import shapely

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            layers = [r[0] for r in con.execute(
                "SELECT table_name FROM gpkg_contents WHERE data_type='features'")]
            if layer is None and len(layers) == 1:
                layer = layers[0]
            if layer not in layers:
                what = (f"has no layer {layer!r}" if layer else
                        f"has {len(layers)} feature layers")
                raise AOIError(f"{path!r} {what}; pick one as {path}#LAYER (layers: "
                               f"{', '.join(layers) or 'none'})")
            col, srs_id = con.execute("SELECT column_name, srs_id FROM gpkg_geometry_columns "
                                      "WHERE table_name=?", (layer,)).fetchone()
            srs = con.execute("SELECT organization, organization_coordsys_id, definition FROM "
                              "gpkg_spatial_ref_sys WHERE srs_id=?", (srs_id,)).fetchone()
            blobs = [r[0] for r in con.execute(f'SELECT "{col}" FROM "{layer}"') if r[0]]
        finally:
            con.close()
    except (sqlite3.Error, TypeError) as err:
        raise AOIError(f"cannot read {path!r} as a GeoPackage ({err}); check it with ogrinfo "
                       "or export the layer to GeoJSON") from None
    geoms = [_gpkg_geometry(b, path) for b in blobs]
    geoms = [g for g in geoms if g is not None]
    if not geoms:
        raise AOIError(f"layer {layer!r} of {path!r} has no geometries; give a layer with at "
                       "least one polygon")
    crs = None
    if srs is not None and srs_id not in (0, -1):
        org, code, definition = srs
        crs = (_crs(f"{org}:{code}", path) if org and str(org).upper() == "EPSG"
               else _crs(definition, path))
    return shapely.GeometryCollection(geoms), crs


def _gpkg_geometry(blob: bytes, path: str):
    """A GeoPackage geometry blob: 'GP', version, flags (byte order, envelope kind, empty),
    srs_id, envelope, then WKB."""
    import shapely

    if len(blob) < 8 or blob[:2] != b"GP":
        raise AOIError(f"{path!r} holds a geometry that is not GeoPackage binary; re-export "
                       "the layer with ogr2ogr")
    flags = blob[3]
    if flags & 0b10000:  # empty geometry
        return None
    env = (0, 32, 48, 48, 64)[(flags >> 1) & 0b111]
    return shapely.from_wkb(blob[8 + env:])


def valid_polygon(geom: Any, *, source: str = "AOI") -> Any:
    """``geom``'s polygonal union, valid. An invalid geometry is repaired with ``make_valid``
    when the repair is unambiguous — GEOS's two methods ('linework' and 'structure') agree on
    the area it covers — and refused otherwise (e.g. overlapping parts, which one method unites
    and the other cuts out)."""
    import shapely
    from shapely.validation import explain_validity

    if geom is None or geom.is_empty:
        raise AOIError(f"the AOI {source!r} is empty; give a polygon")
    parts = list(shapely.get_parts(geom)) if geom.geom_type == "GeometryCollection" else [geom]
    if not any(p.geom_type in ("Polygon", "MultiPolygon") for p in parts):
        raise AOIError(f"the AOI {source!r} is a {parts[0].geom_type}, not an area; give a "
                       "polygon (buffer points or lines first, e.g. ogr2ogr -dialect sqlite "
                       "-sql 'SELECT ST_Buffer(geometry, 100) FROM layer')")
    polys = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon")]
    bad = [p for p in polys if not p.is_valid]
    if bad:
        why = explain_validity(bad[0])
        fixed = []
        for p in polys:
            if p.is_valid:
                fixed.append(p)
                continue
            a = _polygonal(shapely.make_valid(p, method="linework"))
            b = _polygonal(shapely.make_valid(p, method="structure", keep_collapsed=False))
            if a.is_empty or a.symmetric_difference(b).area > 1e-9 * max(b.area, 1e-300):
                raise AOIError(f"the AOI {source!r} is an invalid polygon ({why}) with no "
                               "unambiguous repair (e.g. overlapping parts or rings); fix it "
                               "in a GIS (QGIS: Fix geometries) and try again")
            fixed.append(b)
        warnings.warn(f"the AOI {source!r} was an invalid polygon ({why}); repaired with "
                      "make_valid (unambiguous)", GeosrWarning, stacklevel=3)
        polys = fixed
    out = shapely.union_all(polys) if len(polys) > 1 else polys[0]
    if out.is_empty or out.area <= 0:
        raise AOIError(f"the AOI {source!r} has no area; give a polygon")
    return out


def _polygonal(g):
    import shapely

    polys = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(polys) if polys else shapely.Polygon()


# -- against a raster ---------------------------------------------------------------------------

def resolve_area(aoi: "AOI | str", meta, *, crop: str = "polygon") -> Area:
    """``aoi`` against the raster ``meta``: reprojected to its CRS (edges densified, so straight
    lines in the AOI's CRS follow their true course), in pixel coordinates, the envelope
    snapped outward to whole pixels and clipped to the raster. An AOI that misses the raster
    raises :class:`~geosr.errors.AOIMissError`."""
    import shapely

    if crop not in AOI_CROPS:
        raise AOIError(f"--aoi-crop must be one of {', '.join(AOI_CROPS)}, got {crop!r}")
    aoi = load_aoi(aoi)
    if not meta.has_transform:
        raise AOIError(f"{meta.path or 'the raster'!r} has no geotransform (GCP, RPC or pixel "
                       "grid only), so an AOI cannot be placed on it; warp it first (gdalwarp) "
                       "or crop by pixels with gdal_translate -srcwin")
    geom = aoi.geometry
    if aoi.crs is not None:
        if meta.crs is None:
            raise AOIError(f"the AOI {aoi.source!r} has a CRS but the raster has none; give "
                           "the AOI in the raster's pixel-grid coordinates without a CRS")
        geom = _reproject(geom, aoi.crs, meta.crs, aoi.source)
    inv = ~meta.transform
    px = shapely.affinity.affine_transform(geom, (inv.a, inv.b, inv.d, inv.e, inv.xoff,
                                                  inv.yoff))
    px = shapely.make_valid(px) if not px.is_valid else px  # round-off of a reprojection
    raster = shapely.box(0, 0, meta.width, meta.height)
    inside = px.intersection(raster)
    if inside.is_empty or inside.area <= 0:
        lo = bounds_of(meta.transform, meta.width, meta.height)
        g = geom.bounds
        raise AOIMissError(
            f"the AOI {aoi.source!r} misses the raster {meta.path or ''!r}: the AOI spans "
            f"{_fmt(g)} and the raster {_fmt(lo)} (in the raster's CRS"
            f"{' ' + meta.crs.to_string() if meta.crs is not None else ''}); check the AOI's "
            "CRS (a bare --bbox or WKT is in the raster's CRS) or pick another raster")
    c0, r0, c1, r1 = inside.bounds
    c0, r0 = (max(0, math.floor(_snap(v))) for v in (c0, r0))
    c1, r1 = min(meta.width, math.ceil(_snap(c1))), min(meta.height, math.ceil(_snap(r1)))
    local = shapely.affinity.translate(inside, -c0, -r0)
    return Area(row_off=r0, col_off=c0, height=r1 - r0, width=c1 - c0, geometry=local,
                crop=crop)


def _snap(v: float) -> float:
    return round(v) if abs(v - round(v)) < SNAP_EPS else v


def _fmt(b) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in b) + "]"


def _reproject(geom, src_crs, dst_crs, source: str):
    import shapely
    from pyproj import CRS, Transformer

    dst = CRS.from_user_input(dst_crs.to_wkt() if hasattr(dst_crs, "to_wkt") else dst_crs)
    src = CRS.from_user_input(src_crs)
    if src == dst:
        return geom
    x0, y0, x1, y1 = geom.bounds
    # 64 points per envelope side at least: a straight side in one CRS is a curve in another
    dense = shapely.segmentize(geom, max(x1 - x0, y1 - y0) / 64 or 1.0)
    tr = Transformer.from_crs(src, dst, always_xy=True)

    def fwd(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    out = shapely.transform(dense, fwd)
    coords = shapely.get_coordinates(out)
    if not np.isfinite(coords).all():
        raise AOIError(f"the AOI {source!r} cannot be reprojected from {src.to_string()} to the "
                       f"raster's {dst.to_string()} (it leaves that CRS's valid area); check "
                       "the AOI's CRS")
    return out if out.is_valid else shapely.make_valid(out)


def window_bounds(meta, area: Area) -> tuple[float, float, float, float]:
    """Map bounds (left, bottom, right, top) of ``area``'s window on ``meta``'s grid."""
    t = window_transform(meta.transform, area.col_off, area.row_off, 1, 1)
    return bounds_of(t, area.width, area.height)


__all__ = ["AOI", "Area", "AOI_CROPS", "load_aoi", "parse_bbox", "read_geojson",
           "read_geopackage", "valid_polygon", "resolve_area", "output_mask", "window_bounds"]
