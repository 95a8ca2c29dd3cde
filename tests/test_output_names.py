"""Output names of many-file and --all-frames runs from the values the CLI gives."""
from __future__ import annotations

import pytest

from geosr.batch import output_name, resolve_factor
from geosr.errors import ParameterError


def test_cli_strings_name_outputs_as_parsed_values_do():
    # per axis too (x,y): what `--target-gsd 7,9` / `--scale 2.5,3` hand the library
    assert output_name("s.tif", target_gsd="7,9") == output_name("s.tif", target_gsd=(7, 9)) \
        == "s_7x9m.tif"
    assert output_name("s.tif", target_gsd="10") == "s_10m.tif"
    assert output_name("s.tif", "2.5,3") == output_name("s.tif", (2.5, 3)) == "s_x2.5x3.tif"
    with pytest.raises(ParameterError, match="--target-gsd"):
        output_name("s.tif", target_gsd="7,-1")


def test_bad_target_gsd_fails_before_any_work():
    with pytest.raises(ParameterError, match="--target-gsd must be a positive number"):
        resolve_factor(None, "0,10")
    assert resolve_factor(None, "7,9") == (None, None)
