"""Doctests of a peer's mapping module need that peer installed; without it they are not collected."""

import importlib.util

collect_ignore = [f"{name}.py" for name in ("spikingjelly", "snntorch", "norse")
                  if importlib.util.find_spec(name) is None]
