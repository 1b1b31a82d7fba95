"""The one configuration object shared by `find_lr`, `LRFinderCallback`, `LRFinder` and the CLI."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

LRSpec = float | Sequence[float]
SuggestSpec = str | Callable | Sequence[str | Callable]

MODES = ("exp", "linear")
SNAPSHOT_LOCATIONS = ("cpu", "disk")


def _check_lr(name: str, value: LRSpec) -> None:
    values = [value] if isinstance(value, (int, float)) else list(value)
    if not values:
        raise ValueError(f"{name} is an empty sequence; pass one float, or one float per optimizer param group.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a float or a sequence of floats, got {type(v).__name__} ({v!r}).")
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} ({v}) must be a finite positive learning rate, such as 1e-7.")


@dataclass
class LRFinderConfig:
    """
    Settings of one learning-rate range test. Validated on creation: bad values raise, nothing is clamped.

    Args:
        start_lr (`float` or `Sequence[float]`, *optional*, defaults to 1e-7):
            Learning rate of the first step. A single float applies to the first optimizer param group and the other
            groups keep their ratio to it (a group at 0.1x group 0 stays at 0.1x). A sequence gives one value per group.
        end_lr (`float` or `Sequence[float]`, *optional*, defaults to 10.0):
            Learning rate the schedule heads for. As in fastai, step `i` of `num_steps` uses position `i / num_steps`,
            so the last step stays just below `end_lr`.
        num_steps (`int`, *optional*, defaults to 100):
            Number of optimizer steps of the sweep (at least 2).
        num_sweeps (`int`, *optional*, defaults to 3):
            Sweeps to average: each starts from the same state (restored in between) on the next batches, and the
            suggestions read the step-by-step mean of their raw losses, so that one unlucky run of batches does not
            move them. The cost is `num_sweeps * num_steps` optimizer steps. The split strategy of `groups="auto"`
            averages `num_sweeps - 1` sweeps of the whole model and sweeps the head once (the same cost); the
            sequential strategy sweeps each of its phases once.
        mode (`str`, *optional*, defaults to `"exp"`):
            `"exp"` (geometric spacing) or `"linear"`.
        beta (`float`, *optional*, defaults to 0.98):
            Factor of the debiased exponential moving average that smooths the loss, in [0, 1).
        diverge_threshold (`float`, *optional*, defaults to 4.0):
            Stop once the smoothed loss exceeds the best smoothed loss by `(diverge_threshold - 1) * |best|`, which is
            fastai's "4x the best loss" for positive losses and stays meaningful for negative ones. `None` disables it.
        check_every (`int`, *optional*, defaults to 10):
            The losses stay on the device and are read back every `check_every` steps (one host sync per read), so the
            sweep may run up to `check_every - 1` steps past the stopping point; those are cut from the result.
        skip_start (`int`, *optional*):
            Points dropped from the start of the curve before suggesting; defaults to `num_steps // 10` as in fastai.
        skip_end (`int`, *optional*, defaults to 5):
            Points dropped from the end of the curve before suggesting (fastai's 5); 0 keeps them all.
        suggest (`str`, callable, or a sequence of them, *optional*, defaults to `trough` and fastai's four):
            Suggestion rules to run: names from `hf_lrfind.SUGGESTERS` or callables `(lrs, losses) -> float`.
            The first is the default suggestion (`"trough"`, hf_lrfind's rule; the others are fastai's).
        snapshot (`str`, *optional*, defaults to `"cpu"`):
            Where the pre-sweep state is kept: `"cpu"` memory or `"disk"` (a temporary folder, removed afterwards).
        snapshot_dir (`str`, *optional*):
            Parent folder of the temporary snapshot folder when `snapshot="disk"`.
        max_skipped_steps (`int`, *optional*, defaults to 50):
            fp16 only: how many optimizer steps the gradient scaler may skip (inf/NaN gradients) before the sweep stops.
        confirm_steps (`int`, *optional*, defaults to 0):
            Off at 0. Otherwise, after the sweep, one short training of `confirm_steps` steps at each of
            `confirm_factors` times the suggestion, each from the state before the sweep, on the same batches and
            random draws, under a linear warm-up (first tenth) and decay to 0; where the trials' end losses (the mean
            training loss of their last tenth) bottom out, on a parabola in log(lr) kept between the factors tried,
            becomes the `"confirmed"` suggestion and the default rule. Costs
            `len(confirm_factors) * confirm_steps` more optimizer steps, and holds the trials' batches where the
            dataloader put them (on the accelerator for a prepared one) until they end. Measured in
            docs/suggestions.md ("Confirmation"). Not with the split or sequential strategies (one rate per group).
        confirm_factors (`Sequence[float]`, *optional*, defaults to `(0.5, 1.0, 2.0)`):
            The multiples of the suggestion the confirmation trains at.
    """

    start_lr: LRSpec = 1e-7
    end_lr: LRSpec = 10.0
    num_steps: int = 100
    num_sweeps: int = 3
    mode: Literal["exp", "linear"] = "exp"
    beta: float = 0.98
    diverge_threshold: float | None = 4.0
    check_every: int = 10
    skip_start: int | None = None
    skip_end: int = 5
    suggest: SuggestSpec = field(default_factory=lambda: ("trough", "valley", "slide", "steep", "minimum"))
    snapshot: Literal["cpu", "disk"] = "cpu"
    snapshot_dir: str | None = None
    max_skipped_steps: int = 50
    confirm_steps: int = 0
    confirm_factors: Sequence[float] = (0.5, 1.0, 2.0)

    def __post_init__(self) -> None:
        _check_lr("start_lr", self.start_lr)
        _check_lr("end_lr", self.end_lr)
        starts, ends = self._as_list(self.start_lr), self._as_list(self.end_lr)
        if isinstance(self.start_lr, (int, float)) != isinstance(self.end_lr, (int, float)) or len(starts) != len(ends):
            msg = f"start_lr ({self.start_lr}) and end_lr ({self.end_lr}) must both be floats, or both sequences with one value per param group."
            raise ValueError(msg)
        for i, (s, e) in enumerate(zip(starts, ends)):
            if s >= e:
                where = f" for group {i}" if len(starts) > 1 else ""
                raise ValueError(f"start_lr ({s}) must be smaller than end_lr ({e}){where}; swap them.")
        for name in ("num_steps", "num_sweeps", "check_every", "skip_end", "max_skipped_steps", "confirm_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
        if self.num_steps < 2:
            raise ValueError(
                f"num_steps ({self.num_steps}) must be at least 2; a range test needs several steps, 100 is usual."
            )
        if self.num_sweeps < 1:
            raise ValueError(
                f"num_sweeps ({self.num_sweeps}) must be at least 1; 3 averages out the order of the batches."
            )
        if self.check_every < 1:
            raise ValueError(f"check_every ({self.check_every}) must be at least 1.")
        if self.skip_end < 0 or (self.skip_start is not None and self.skip_start < 0):
            raise ValueError(f"skip_start ({self.skip_start}) and skip_end ({self.skip_end}) must not be negative.")
        if self.max_skipped_steps < 0:
            raise ValueError(f"max_skipped_steps ({self.max_skipped_steps}) must not be negative.")
        if not (isinstance(self.beta, (int, float)) and 0 <= self.beta < 1):
            raise ValueError(f"beta ({self.beta}) must be in [0, 1); fastai uses 0.98.")
        if self.diverge_threshold is not None and not (
            isinstance(self.diverge_threshold, (int, float)) and self.diverge_threshold > 1
        ):
            raise ValueError(
                f"diverge_threshold ({self.diverge_threshold}) must be a number above 1 (fastai uses 4), or None."
            )
        if self.confirm_steps != 0 and self.confirm_steps < 10:
            raise ValueError(
                f"confirm_steps ({self.confirm_steps}) must be 0 (off) or at least 10: a trial's score is the mean loss of its last tenth of steps."
            )
        factors = self.confirm_factors
        if (
            isinstance(factors, (str, bytes))
            or not isinstance(factors, Sequence)
            or not factors
            or not all(
                isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f) and f > 0 for f in factors
            )
            or len(set(factors)) != len(factors)
        ):
            raise ValueError(
                f"confirm_factors ({factors!r}) must be distinct positive numbers, such as (0.5, 1.0, 2.0): the multiples of the suggestion to train at."
            )
        self.confirm_factors = tuple(sorted(float(f) for f in factors))
        if self.mode not in MODES:
            raise ValueError(f"mode ({self.mode!r}) must be one of {MODES}.")
        if self.snapshot not in SNAPSHOT_LOCATIONS:
            raise ValueError(f"snapshot ({self.snapshot!r}) must be one of {SNAPSHOT_LOCATIONS}.")
        from .suggest import resolve_suggesters

        resolve_suggesters(self.suggest)  # raises on unknown names

    @staticmethod
    def _as_list(value: LRSpec) -> list[float]:
        return [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
