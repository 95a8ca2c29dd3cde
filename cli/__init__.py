"""Click front end of geosr, installed as ``geosr_cli`` (console script ``geosr``)."""
