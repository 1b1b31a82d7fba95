"""hf_lrfind: the learning-rate range test (LR finder) for the Hugging Face stack."""

import logging

from .config import LRFinderConfig
from .data import causal_lm_batches, load_sample_text, masked_lm_batches, seq_cls_batches, train_tokenizer
from .engine import StepOutput, range_test, sweep
from .groups import build_param_groups, detect_groups, layer_decay_ratios, param_groups_from_result
from .result import LRFinderResult
from .runner import AccelerateStateSnapshot, LRFinder
from .state import StateSnapshot
from .suggest import SUGGESTERS, centered_mean, curve_warnings, minimum, prepare_curve, slide, steep, trough, valley
from .trainer import LRFinderCallback, apply_result, find_lr

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "SUGGESTERS",
    "AccelerateStateSnapshot",
    "LRFinder",
    "LRFinderCallback",
    "apply_result",
    "find_lr",
    "build_param_groups",
    "centered_mean",
    "curve_warnings",
    "causal_lm_batches",
    "detect_groups",
    "layer_decay_ratios",
    "load_sample_text",
    "masked_lm_batches",
    "param_groups_from_result",
    "seq_cls_batches",
    "train_tokenizer",
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
    "trough",
    "valley",
]
