"""The optimizers the benchmark trains and sweeps with, by name, each as a user of the HF stack builds it.

- `adamw`: `torch.optim.AdamW` with its defaults (the Trainer's default optimizer).
- `lion`: Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2): the sign of an
  interpolation of the gradient and its momentum, betas (0.9, 0.99), decoupled weight decay. Written here from the
  paper (torch has none; the Trainer's `optim="lion_32bit"` is bitsandbytes' CUDA kernel).
- `sgd`: `torch.optim.SGD` with momentum 0.9 (the Trainer's `optim="sgd"` has none; momentum is what users add).
- `adafactor`: `transformers.Adafactor` as the Trainer's `optim="adafactor"` builds it: `scale_parameter=False,
  relative_step=False, warmup_init=False`, the peak rate given.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class Lion(torch.optim.Optimizer):
    """Lion: `update = sign(beta1 * m + (1 - beta1) * g)`, `p -= lr * (update + wd * p)`, `m = beta2 * m + (1 - beta2) * g`."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"lr ({lr}) must not be negative.")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m.mul(beta1).add_(p.grad, alpha=1 - beta1)), alpha=-group["lr"])
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss


def build(name: str, groups: list[dict]) -> torch.optim.Optimizer:
    """The optimizer `name` over param groups that carry their own `lr` and `weight_decay`."""
    if name == "adamw":
        return torch.optim.AdamW(groups)
    if name == "lion":
        return Lion(groups)
    if name == "sgd":
        return torch.optim.SGD(groups, momentum=0.9)
    if name == "adafactor":
        from transformers import Adafactor

        return Adafactor(groups, scale_parameter=False, relative_step=False, warmup_init=False, lr=groups[0]["lr"])
    raise ValueError(f"unknown optimizer {name!r}: one of adamw, lion, sgd, adafactor")
