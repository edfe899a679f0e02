"""Frontends: importers that turn user models into ``snnir.Graph`` (installed as ``snnir.frontends``)."""
