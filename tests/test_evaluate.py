"""geosr.evaluation: the SR evaluation protocol on images and GeoTIFFs (read by geosr.images)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from conftest import smooth_image
from geosr.errors import InputError, ParameterError, WeightsError
from geosr.evaluation import evaluate

# Published bicubic PSNR/SSIM (MATLAB protocol), ../shared/data/README.md
REFERENCE = [("set5", 2, 33.66, 0.9299), ("set5", 3, 30.39, 0.8682), ("set5", 4, 28.42, 0.8104),
             ("set14", 4, 26.00, 0.7027)]


@pytest.mark.shared
@pytest.mark.parametrize("folder,scale,ref_psnr,ref_ssim", REFERENCE)
def test_bicubic_reproduces_published_numbers(shared_data, folder, scale, ref_psnr, ref_ssim):
    r = evaluate(shared_data / "bench" / folder, model="bicubic", scale=scale)
    assert r["n_images"] == (5 if folder == "set5" else 14)
    assert abs(r["psnr"] - ref_psnr) <= 0.03, r["psnr"]
    assert abs(r["ssim"] - ref_ssim) <= 0.002, r["ssim"]


@pytest.fixture
def png_folder(tmp_path):
    d = tmp_path / "hr"
    d.mkdir()
    rgb = smooth_image(3, 50, 61, seed=1).transpose(1, 2, 0)
    Image.fromarray(rgb).save(d / "a.png")
    Image.fromarray(smooth_image(1, 47, 40, seed=2)[0]).save(d / "b.png")
    (d / "notes.txt").write_text("ignored")
    return d


def test_folder_of_images(png_folder):
    r = evaluate(png_folder, model="bicubic", scale=2)
    assert r["n_images"] == 2 and r["model"] == "bicubic" and r["scale"] == 2
    rows = {row["name"]: row for row in r["images"]}
    assert rows["a.png"]["mode"] == "y" and rows["b.png"]["mode"] == "gray"
    assert rows["a.png"]["shape"] == [3, 50, 60]  # modcrop
    assert r["psnr"] == pytest.approx(np.mean([x["psnr"] for x in r["images"]]))
    near = evaluate(png_folder, model="nearest", scale=2)
    assert near["psnr"] < r["psnr"] - 0.5  # the metric sees the difference
    assert 0 < r["ssim"] <= 1


def test_self_ensemble_of_a_symmetric_model_changes_nothing(png_folder):
    a = evaluate(png_folder, model="bicubic", scale=3)
    b = evaluate(png_folder, model="bicubic", scale=3, self_ensemble=True)
    assert b["self_ensemble"] and abs(a["psnr"] - b["psnr"]) < 0.01


def unweighted_network(scale: int = 2) -> str:
    """A registry network with no bundled weights at ``scale`` for 3 bands (bundles change)."""
    from geosr.models import get_spec, list_models
    from geosr.models.bundled import bundled_weights

    for name in ("srcnn", "fsrcnn", "vdsr", "espcn", *list_models(kind="network")):
        if scale in get_spec(name).scales and bundled_weights(name, scale=scale, bands=3) is None:
            return name
    pytest.skip("every network has bundled weights")


def test_networks_need_weights(png_folder):
    name = unweighted_network()
    with pytest.raises(WeightsError, match="allow"):
        evaluate(png_folder, model=name, scale=2)
    r = evaluate(png_folder, model=name, scale=2, allow_random_weights=True)
    assert r["n_images"] == 2 and math.isfinite(r["psnr"])


def test_model_object(png_folder):
    from geosr.models import create_model

    r = evaluate(png_folder, model=create_model("bicubic", scale=2), scale=2)
    assert r["psnr"] == pytest.approx(evaluate(png_folder, model="bicubic", scale=2)["psnr"])


def test_uint16_multispectral_geotiff(make_geotiff):
    path = make_geotiff("ms.tif", bands=4, height=64, width=64, dtype="uint16")
    r = evaluate(path, model="bicubic", scale=2)
    row = r["images"][0]
    assert row["mode"] == "bands" and row["data_range"] == 65535
    assert {"sam", "ergas"} <= set(r) and r["sam"] > 0 and r["ergas"] > 0
    # PSNR over a 10x smaller peak is exactly 20 dB lower
    r2 = evaluate(path, model="bicubic", scale=2, data_range=6553.5)
    assert r["psnr"] - r2["psnr"] == pytest.approx(20.0, abs=1e-6)


def test_nodata_pixels_are_not_scored(make_geotiff):
    from geosr import metrics as M

    data = smooth_image(3, 64, 64, seed=4, dtype="int16")
    data[:, 40:, :] = -9999
    masked = evaluate(make_geotiff("nd.tif", data=data, nodata=-9999), model="bicubic", scale=2)
    unmasked = evaluate(make_geotiff("nd2.tif", data=data), model="bicubic", scale=2)
    sr = M.to_dtype(M.imresize(M.imresize(data, 0.5), 2), np.int16)
    valid = M.shave(data[0] != -9999, 2)
    a, b = M.shave(data, 2), M.shave(sr, 2)
    assert masked["psnr"] == pytest.approx(M.psnr(a, b, data_range=65535, mask=valid))
    assert unmasked["psnr"] == pytest.approx(M.psnr(a, b, data_range=65535))
    assert masked["psnr"] != pytest.approx(unmasked["psnr"])


def test_float_rasters_need_a_data_range(make_geotiff):
    path = make_geotiff("f.tif", bands=1, dtype="float32", height=40, width=40)
    with pytest.raises(ParameterError, match="--data-range"):
        evaluate(path, model="bicubic", scale=2)
    r = evaluate(path, model="bicubic", scale=2, data_range=100.0)
    assert r["images"][0]["data_range"] == 100.0 and "sam" not in r


def test_a_16_bit_raster_is_scored_as_upscale_writes_it(make_geotiff, tmp_path):
    """Bundled 1-band weights on uint16 data: evaluate's PSNR is the PSNR of the file
    ``geosr upscale`` writes from the same LR (the same input range: the LR's robust range,
    not the dtype's, which would feed the network inputs some 16 times dimmer)."""
    import rasterio

    from geosr import metrics as M
    from geosr import upscale_file
    from geosr.evaluation import input_range
    from geosr.models.bundled import bundled_weights
    from geosr.models.loading import load_model

    weights = str(bundled_weights("espcn", scale=2, bands=1))
    hr = (smooth_image(1, 64, 64, seed=6, dtype="uint16") >> 4).astype(np.uint16) + 300
    r = evaluate(make_geotiff("hr.tif", data=hr), model="espcn", scale=2, weights=weights)
    lr = M.imresize(hr, 0.5, out_dtype=np.uint16)
    upscale_file(make_geotiff("lr.tif", data=lr), tmp_path / "sr.tif", model="espcn", scale=2,
                 weights=weights)
    with rasterio.open(tmp_path / "sr.tif") as ds:
        sr = ds.read()
    want = M.psnr(M.shave(hr, 2), M.shave(sr, 2), data_range=65535)
    assert r["psnr"] == pytest.approx(want, abs=0.01)
    lo, hi = input_range(load_model("espcn", scale=2, weights=weights), lr)
    assert 300 <= lo < hi <= 4095 + 300


def test_nodata_stays_out_of_the_input_range_as_in_the_engine(make_geotiff):
    """A 16-bit image with a nodata border: its LR is mapped by the range the engine takes
    from an LR file whose nodata covers the pixels that saw it (not from 0 up)."""
    from geosr import metrics as M
    from geosr.evaluation import evaluate_image, input_range
    from geosr.images import read_image
    from geosr.io import read_meta, read_sample
    from geosr.models.bundled import bundled_weights
    from geosr.models.loading import load_model
    from geosr.pixels import normalisation, sample_stats

    hr = (smooth_image(1, 64, 64, seed=6, dtype="uint16") >> 4).astype(np.uint16) + 300
    hr[:, :, :20] = 0
    lr = M.imresize(hr, 0.5, out_dtype=np.uint16)
    lr_valid = M.imresize((hr != 0).astype(np.float64), 0.5)[0] > 1 - 1e-6
    lr_file = make_geotiff("lr.tif", data=np.where(lr_valid, lr, 0).astype(np.uint16), nodata=0)
    _, lo, hi = sample_stats(read_sample(str(lr_file), (0,), read_meta(lr_file)), 0)
    (elo,), (ehi,) = normalisation(None, "uint16", lo, hi, None)
    assert input_range(None, lr, valid=lr_valid) == (elo, ehi) and elo > 300
    net = load_model("espcn", scale=2, weights=str(bundled_weights("espcn", scale=2, bands=1)))
    img = read_image(make_geotiff("hr.tif", data=hr, nodata=0))
    scored = evaluate_image(net, img, scale=2, in_chans=1, value_range=None)
    assert scored["psnr"] == evaluate_image(net, img, scale=2, in_chans=1,
                                            value_range=(elo, ehi))["psnr"]


def test_without_a_model_the_default_upscale_would_run_is_scored(make_geotiff, tmp_path):
    """No --model: the network and bundled variant geosr upscale picks for such a raster
    (16-bit: the 1-band weights), and the score is that of the file it writes."""
    import rasterio

    from geosr import metrics as M
    from geosr import upscale_file

    hr = (smooth_image(2, 48, 48, seed=9, dtype="uint16") >> 3).astype(np.uint16)
    r = evaluate(make_geotiff("hr.tif", data=hr), scale=2)
    upscale_file(make_geotiff("lr.tif", data=M.imresize(hr, 0.5, out_dtype=np.uint16)),
                 tmp_path / "sr.tif", scale=2)
    with rasterio.open(tmp_path / "sr.tif") as ds:
        sr, tags = ds.read(), ds.tags()
    assert (r["model"], r["weights"]) == (tags["GEOSR_MODEL"], tags["GEOSR_WEIGHTS"])
    assert r["weights"].endswith("_1b.safetensors")
    assert r["psnr"] == pytest.approx(M.psnr(M.shave(hr, 2), M.shave(sr, 2), data_range=65535),
                                      abs=0.01)


def test_a_whole_factor_model_at_2_5_names_the_models_that_can(png_folder):
    """One rule (models._registry.check_scale) for evaluate, upscale and loading."""
    with pytest.raises(ParameterError, match=r"whole factors only .*: .*liif.* \(--model NAME\)"):
        evaluate(png_folder, model="edsr-baseline", scale=2.5)


def test_errors(tmp_path, png_folder):
    with pytest.raises(InputError, match="does not exist"):
        evaluate(tmp_path / "nope", model="bicubic", scale=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        evaluate(tmp_path / "empty", model="bicubic", scale=2)
    with pytest.raises(ParameterError):
        evaluate(png_folder, model="bicubic", scale=2, channels="rgb")


def test_public_name_is_callable(png_folder):
    import geosr

    r = geosr.evaluate(png_folder, model="bicubic", scale=2)
    assert r["n_images"] == 2


def test_old_module_is_an_alias_for_one_release(png_folder):
    """``geosr.evaluate`` (the module) re-exports geosr.evaluation and geosr.images until it goes;
    importing it binds the package attribute ``geosr.evaluate`` to the module, and the public
    function ``geosr.evaluate(...)`` must keep working all the same."""
    import importlib

    import geosr
    from geosr import evaluation, images

    old = importlib.import_module("geosr.evaluate")
    assert set(old.__all__) == set(evaluation.__all__) | set(images.__all__)
    for name in old.__all__:
        home = evaluation if name in evaluation.__all__ else images
        assert getattr(old, name) is getattr(home, name), name
    assert geosr.evaluate(png_folder, model="bicubic", scale=2)["n_images"] == 2


def test_models_with_a_size_multiple(png_folder):
    from geosr.models import create_model, get_spec

    model = create_model("rrdbnet", scale=2, **get_spec("rrdbnet").extra["tiny"])
    assert model.size_multiple > 1  # the 25x30 and 23x20 LR images are not multiples of it
    r = evaluate(png_folder, model=model, scale=2)
    assert r["n_images"] == 2 and all(np.isfinite(x["psnr"]) for x in r["images"])


def test_card_range_applies_only_to_its_dtype():
    """A card's value_range is for its dtype; a run trained on several dtypes ("mixed", e.g.
    8-bit images plus 16-bit windows) names no single range, and that is not an error."""
    from geosr.evaluation import _card_value_range

    assert _card_value_range({"value_range": [0, 255]}, np.uint8) == (0.0, 255.0)
    assert _card_value_range({"value_range": [0, 255], "dtype": "uint8"}, np.uint16) is None
    assert _card_value_range({"value_range": [0, 65535], "dtype": "mixed"}, np.uint8) is None
    assert _card_value_range({"value_range": [0, 65535], "dtype": "mixed"}, np.uint16) is None
    assert _card_value_range({"value_range": [0, 10000], "dtype": "uint16"},
                             np.dtype("uint16")) == (0.0, 10000.0)


def test_an_absurd_scale_is_refused_by_image_size_before_the_model_is_built(png_folder):
    """x1e9 once built a 52 GiB bicubic phase table before any size check."""
    with pytest.raises(InputError, match=r"61x50 pixels is too small for x1e\+09; use images of "
                                         r"at least"):
        evaluate(png_folder, model="bicubic", scale=1e9)
    with pytest.raises(InputError, match=r"61x50 pixels is too small for x13"):
        evaluate(png_folder, model="bicubic", scale=13)
