"""Loss recording during a sweep: raw losses kept on the device, debiased EMA smoothing and the stop rule."""

from __future__ import annotations

import math

import torch


def diverged(smoothed: float, best: float, threshold: float) -> bool:
    """
    Whether `smoothed` has diverged from `best`: it exceeds it by more than `(threshold - 1) * |best|`.

    For a positive `best` this is fastai's `smoothed > threshold * best`; unlike that rule it also works when losses
    are negative (where `threshold * best` would lie below `best` and stop the sweep at once).
    """
    return smoothed - best > (threshold - 1) * abs(best)


def debiased_ema(values: list[float], beta: float) -> list[float]:
    """fastai's smoothing of a whole curve at once: the values [`LossRecorder`] computes step by step."""
    out, avg = [], 0.0
    for t, value in enumerate(values, start=1):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta**t))
    return out


class LossRecorder:
    """
    Records one loss per sweep step without a host sync per step.

    Smoothing is fastai's debiased EMA (`AvgSmoothLoss`): `v_t = beta * v_(t-1) + (1 - beta) * loss_t` with `v_0 = 0`,
    and `smoothed_t = v_t / (1 - beta ** t)` for t = 1, 2, ...

    `append` keeps the 0-d loss tensor on its device. Every `check_every` steps, `check` copies the pending losses to
    the host in one transfer, extends the smoothed curve and applies the stop rule. Points recorded after the point
    that triggered a stop are cut, so the result ends at that point (fastai records the point that stops the sweep).

    Args:
        beta (`float`): smoothing factor of the debiased EMA.
        diverge_threshold (`float` or `None`): see [`~hf_lrfind.LRFinderConfig`]; `None` never stops on divergence.
        check_every (`int`): steps between two host reads.
    """

    def __init__(self, beta: float, diverge_threshold: float | None, check_every: int) -> None:
        self.beta, self.threshold, self.check_every = beta, diverge_threshold, check_every
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._pending: list[torch.Tensor] = []
        self._avg = 0.0
        self.best = math.inf
        self.stop_reason: str | None = None

    def __len__(self) -> int:
        return len(self.losses) + len(self._pending)

    def append(self, loss: torch.Tensor) -> bool:
        """Record the loss of one step. Returns whether the sweep must stop (checked every `check_every` steps)."""
        self._pending.append(loss.detach().reshape(()).float())
        return len(self._pending) >= self.check_every and self.check()

    def check(self) -> bool:
        """Move the pending losses to the host, smooth them and apply the stop rule. Returns whether to stop."""
        if not self._pending or self.stop_reason is not None:
            return self.stop_reason is not None
        values = torch.stack(self._pending).cpu().tolist()
        self._pending.clear()
        for value in values:
            self.losses.append(value)
            t = len(self.losses)
            self._avg = self.beta * self._avg + (1 - self.beta) * value
            smoothed = self._avg / (1 - self.beta**t)
            self.smoothed.append(smoothed)
            if not math.isfinite(value):
                self.stop_reason = "non_finite_loss"
            elif t == 1 or smoothed < self.best:
                self.best = smoothed
            elif self.threshold is not None and diverged(smoothed, self.best, self.threshold):
                self.stop_reason = "diverged"
            if self.stop_reason is not None:
                return True
        return False
