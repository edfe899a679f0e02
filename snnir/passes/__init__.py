"""Graph passes: each ``Graph -> Graph``, registered by name, composed by ``optimize``."""

from snnir.passes import (  # noqa: F401  (registration)
    ann_to_snn,
    cleanup,
    elementwise,
    fold_batchnorm,
    grouping,
    quantize,
    schedule,
    to_loihi,
)
from snnir.passes.pipeline import DEFAULT_PIPELINE, PassCheckError, optimize
from snnir.passes.registry import get_pass, register_pass, registered_passes

__all__ = ["DEFAULT_PIPELINE", "PassCheckError", "get_pass", "optimize", "register_pass", "registered_passes"]
