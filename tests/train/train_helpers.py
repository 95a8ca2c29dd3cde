"""Small training folders written into tmp_path (fixtures imported by the train tests)."""
from __future__ import annotations

import pytest
from PIL import Image

from conftest import smooth_image


@pytest.fixture
def image_folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(6):
        arr = smooth_image(3, 40 + 4 * i, 44, seed=10 + i).transpose(1, 2, 0)
        Image.fromarray(arr).save(d / f"im{i}.png")
    Image.fromarray(smooth_image(1, 36, 36, seed=3)[0]).save(d / "gray.png")
    Image.fromarray(smooth_image(3, 8, 8, seed=4).transpose(1, 2, 0)).save(d / "tiny.png")
    return d
