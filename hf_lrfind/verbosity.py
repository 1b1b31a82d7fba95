"""
How much of hf_lrfind's log reaches the console, in the way of `transformers.logging`: by default its warnings (a curve
that cannot be trusted, fp16 on a CPU, ...) are written to stderr by the main process, as `[hf_lrfind] ...`.

```python
>>> import hf_lrfind
>>> hf_lrfind.verbosity.set_verbosity_info()        # also the sweeps' summaries and the rates applied
>>> hf_lrfind.verbosity.set_verbosity_error()       # errors only
```

The environment variable `HF_LRFIND_VERBOSITY` (`debug`, `info`, `warning`, `error` or `critical`) sets the level at
import. The package's logger does not pass its records on to the root logger (as transformers' does not), so a
program that configures logging itself sees each message once; `enable_propagation()` and
`disable_default_handler()` hand them to its handlers instead.
"""

from __future__ import annotations

import logging
import os
import sys

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_ROOT = "hf_lrfind"


def _on_main_process(record: logging.LogRecord) -> bool:
    """Under torchrun and `accelerate launch`, only rank 0 writes (every process computes the same warnings)."""
    return os.environ.get("RANK", "0") == "0"


def _default_level() -> int:
    name = os.environ.get("HF_LRFIND_VERBOSITY", "warning").lower()
    if name not in LEVELS:
        logging.getLogger(_ROOT).warning(
            f"HF_LRFIND_VERBOSITY={name!r} is not one of {', '.join(LEVELS)}; using 'warning'."
        )
        return logging.WARNING
    return LEVELS[name]


_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("[hf_lrfind] %(message)s"))
_handler.addFilter(_on_main_process)


def _library_logger() -> logging.Logger:
    return logging.getLogger(_ROOT)


def _configure() -> None:
    logger = _library_logger()
    if _handler not in logger.handlers:
        logger.addHandler(logging.NullHandler())  # without the default handler, no fallback to Python's last resort
        logger.addHandler(_handler)
        logger.setLevel(_default_level())
        logger.propagate = False


def get_verbosity() -> int:
    """The level of the package's logger (`logging.WARNING` by default)."""
    return _library_logger().getEffectiveLevel()


def set_verbosity(level: int) -> None:
    """Set the level of the package's logger: `logging.INFO`, `logging.WARNING`, ..."""
    _library_logger().setLevel(level)


def set_verbosity_info() -> None:
    set_verbosity(logging.INFO)


def set_verbosity_warning() -> None:
    set_verbosity(logging.WARNING)


def set_verbosity_error() -> None:
    set_verbosity(logging.ERROR)


def disable_default_handler() -> None:
    """Stop writing to stderr (the records still reach handlers you add, or the root logger with propagation)."""
    _library_logger().removeHandler(_handler)


def enable_default_handler() -> None:
    _library_logger().addHandler(_handler)


def enable_propagation() -> None:
    """Pass the package's records on to the root logger's handlers too."""
    _library_logger().propagate = True


def disable_propagation() -> None:
    _library_logger().propagate = False
