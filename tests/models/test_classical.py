"""Classical interpolators: float64 data is interpolated with float64 taps."""
from __future__ import annotations

import numpy as np
import torch

from geosr.models import create_model
from geosr.models.classical import keys_cubic, phase_weights


def test_float64_input_uses_unrounded_taps():
    """Values ~1e6 at x3: float32 taps (rounded weights) err by ~0.06; float64 taps by ~1e-10."""
    rng = np.random.default_rng(0)
    x = 1e6 + rng.random((1, 1, 12, 14)) * 1e3
    m = create_model("bicubic", scale=3).eval()
    with torch.no_grad():
        y = m(torch.from_numpy(x))[0, 0].numpy()
    assert y.dtype == np.float64
    w, r = phase_weights(keys_cubic, 4, 3)
    # one interior output pixel by hand: taps around LR (5, 6), phase 0 (a third of a pixel off)
    rows, cols = 5 + np.arange(-r, r + 1), 6 + np.arange(-r, r + 1)
    ref = w[0] @ x[0, 0][np.ix_(rows, cols)] @ w[0]
    assert abs(y[5 * 3, 6 * 3] - ref) <= 1e-9 * ref
