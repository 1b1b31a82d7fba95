"""hf_lrfind: the learning-rate range test (LR finder) for the Hugging Face stack."""

import logging

from .config import LRFinderConfig
from .engine import StepOutput, range_test, sweep
from .result import LRFinderResult
from .state import StateSnapshot
from .suggest import SUGGESTERS, minimum, prepare_curve, slide, steep, valley

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "SUGGESTERS",
    "LRFinderConfig",
    "LRFinderResult",
    "StateSnapshot",
    "StepOutput",
    "__version__",
    "minimum",
    "prepare_curve",
    "range_test",
    "slide",
    "steep",
    "sweep",
    "valley",
]
