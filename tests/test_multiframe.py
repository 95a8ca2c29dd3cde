"""Multi-frame back-projection (geosr/multiframe.py) on stacks synthesised by
geosr.train.stacks, the generator geosr evaluate --frames uses, from images made here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import smooth_image
from geosr import metrics as M
from geosr.errors import ParameterError
from geosr.multiframe import back_project_frames, estimate_shifts, refine_shifts
from geosr.train.stacks import StackOptions, draw_frame, synthesise, target_index

S, T = 4, 5


def _stack(seed=0, size=120, **opts):
    """A float stack (no quantisation): frames, the target HR, the true shifts, cloud-free."""
    hr = _textured(size, seed).astype(np.float64)
    options = StackOptions(**opts)
    st = synthesise(torch.from_numpy(hr), frames=T, scale=S, options=options, seed=seed,
                    index=0, clamp=None)
    t0 = target_index(T)
    shifts = [draw_frame(options, scale=S, seed=seed, index=0, offset=t - t0,
                         lr_shape=tuple(st.frames.shape[-2:]))["shift"] for t in range(T)]
    clear = None if st.clear is None else st.clear[:, 0].numpy() > 0.5
    return st.frames.numpy(), st.hr.numpy(), [tuple(s) for s in shifts], clear


def _textured(size, seed):
    """Smooth structure plus 2-pixel random texture (uint8 RGB): detail a single frame
    aliases away and the frames' other sub-pixel phases still hold."""
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, (3, size // 2, size // 2)).repeat(2, 1).repeat(2, 2)
    return (0.6 * smooth_image(3, size, size, seed=seed) + 0.4 * tex).astype(np.uint8)


def _psnr(a, b):
    return M.psnr(M.shave(a, S), M.shave(b, S), data_range=255.0)


def test_the_true_image_is_a_fixed_point_with_the_true_shifts():
    """D, the shifts' convention and the frames' synthesis agree exactly: the HR the frames
    were made from explains every frame, so back-projection does not move it."""
    frames, hr, shifts, _ = _stack()
    out = back_project_frames(hr, frames, shifts, scale=S, iterations=5)
    assert np.abs(out - hr).max() < 1e-9
    wrong = [shifts[0]] + [(dy + 1, dx) for dy, dx in shifts[1:]]  # and not trivially
    assert np.abs(back_project_frames(hr, frames, wrong, scale=S, iterations=5) - hr).max() > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_shifts_are_estimated_from_the_frames(seed):
    frames, hr, shifts, _ = _stack(seed)
    t0 = target_index(T)
    est = estimate_shifts(frames, target=t0, scale=S)
    bicubic = M.imresize(frames[t0], S)
    refined = refine_shifts(bicubic, frames, est, target=t0, scale=S)
    assert refined == shifts, (est, shifts)


def test_back_projection_adds_what_the_other_frames_saw():
    """From the target's bicubic enlargement: every frame's samples raise PSNR above the
    target's own back-projection (soft consistency with one frame), more with more iterations."""
    frames, hr, shifts, _ = _stack(2)
    t0 = target_index(T)
    start = M.imresize(frames[t0], S)
    own = back_project_frames(start, frames[t0:t0 + 1], [(0, 0)], scale=S, iterations=20)
    p = {n: _psnr(hr, back_project_frames(start, frames, shifts, scale=S, iterations=n))
         for n in (5, 20)}
    # measured: own 19.65, 5 iterations 19.94, 20 iterations 20.39 dB (deterministic)
    assert p[20] > p[5] + 0.3 and p[5] > _psnr(hr, own) + 0.2, (p, _psnr(hr, own))


def test_invalid_pixels_of_a_frame_never_count():
    """Pixels marked invalid (clouds, nodata) cannot change the output, whatever they hold."""
    frames, hr, shifts, _ = _stack(3)
    t0 = target_index(T)
    start = M.imresize(frames[t0], S)
    valid = np.ones((T,) + frames.shape[-2:], bool)
    valid[1, 5:20, 3:17] = False
    a = back_project_frames(start, frames, shifts, scale=S, iterations=4, valid=valid)
    cloudy = frames.copy()
    cloudy[1, :, 5:20, 3:17] = 50.0
    b = back_project_frames(start, cloudy, shifts, scale=S, iterations=4, valid=valid)
    assert np.array_equal(a, b)
    c = back_project_frames(start, cloudy, shifts, scale=S, iterations=4)
    assert not np.allclose(a, c)


def test_far_frames_are_left_out_with_a_warning_and_bad_calls_refused():
    from geosr.errors import GeosrWarning

    frames, hr, shifts, _ = _stack(4)
    with pytest.warns(GeosrWarning, match="1 frame"):
        back_project_frames(hr, frames, [None, *shifts[1:]], scale=S, iterations=1)
    with pytest.raises(ParameterError, match="whole factors"):
        back_project_frames(hr, frames, shifts, scale=2.5)
    with pytest.raises(ParameterError, match="not x4"):
        back_project_frames(hr[:, :-4], frames, shifts, scale=S)


def test_consistency_frames_only_where_there_are_frames(make_geotiff, tmp_path):
    """evaluate --frames takes --consistency frames and beats the same model without it;
    without --frames, and in upscale, it is refused with the fix."""
    from PIL import Image

    from geosr.engine import upscale_file
    from geosr.evaluation import evaluate

    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_textured(96, i).transpose(1, 2, 0)).save(folder / f"{i}.png")
    kw = dict(model="bicubic", scale=4, frames=5)
    plain = evaluate(folder, **kw)
    every = evaluate(folder, consistency="frames", consistency_iterations=10, **kw)
    assert every["consistency_mode"] == "frames" and every["consistency_iterations"] == 10
    assert every["psnr"] > plain["psnr"] + 0.5, (every["psnr"], plain["psnr"])
    with pytest.raises(ParameterError, match="--frames T"):
        evaluate(folder, model="bicubic", scale=4, consistency="frames")
    with pytest.raises(ParameterError, match="not yet run by upscale"):
        upscale_file(make_geotiff("a.tif"), tmp_path / "o.tif", model="bicubic", scale=2,
                     consistency="frames")
