"""The model catalogue behind `geosr models`: every registered network, its bundled weights."""
from __future__ import annotations

from geosr.models import list_models
from geosr.models.bundled import list_bundled
from geosr.models.catalog import describe_weights, model_table


def test_table_has_a_row_per_model_with_its_bundled_weights():
    rows = {r["name"]: r for r in model_table()}
    assert set(rows) == set(list_models())
    for b in list_bundled():
        assert {"scale": b["scale"], "bands": b["bands"]} in rows[b["arch"]]["bundled_weights"]
    assert rows["bicubic"]["params"] == 0 and rows["edsr-baseline"]["params"] > 1e6


def test_describe_reads_the_card_of_a_bundled_file():
    b = next(b for b in list_bundled() if b["arch"] == "espcn")
    d = describe_weights(str(b["path"]))
    assert (d["arch"], d["scale"], d["bands"]) == ("espcn", b["scale"], b["bands"])
    assert d["source"] == "geosr card" and len(d["sha256"]) == 64
