"""Backends: lowerings of ``snnir.Graph`` (installed as ``snnir.backends``)."""
