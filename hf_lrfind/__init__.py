"""hf_lrfind: the learning-rate range test (LR finder) for the Hugging Face stack."""

from . import verbosity
from ._version import __version__
from .core.config import LRFinderConfig
from .core.engine import range_test
from .core.result import LRFinderResult
from .core.state import StateSnapshot
from .core.suggest import (
    SUGGESTERS,
    centered_mean,
    curve_warnings,
    minimum,
    prepare_curve,
    pretrained,
    probe,
    slide,
    steep,
    trough,
    valley,
)
from .core.sweep import StepOutput, sweep
from .data import causal_lm_batches, load_sample_text, masked_lm_batches, seq_cls_batches, train_tokenizer
from .groups.build import build_param_groups, layer_decay_ratios, param_groups_from_result
from .groups.detect import detect_groups
from .integrations.accelerate_state import AccelerateStateSnapshot
from .integrations.runner import LRFinder
from .integrations.trainer import LRFinderCallback, apply_result, find_lr

verbosity._configure()

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
    "verbosity",
    "minimum",
    "prepare_curve",
    "pretrained",
    "probe",
    "range_test",
    "slide",
    "steep",
    "sweep",
    "trough",
    "valley",
]
