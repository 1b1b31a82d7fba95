"""
What the suggestion benchmark (docs/suggestions.md) measured for each optimizer family, and the warning a result
carries when its optimizer's family was not measured or the default rule was measured to miss there.

A family is a set of optimizer class names that share an update rule (AdamW and its 8-bit, paged and fused
implementations). The evidence is stated in words with the regimes it comes from; nothing here changes a suggestion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .state import torch_optimizer


@dataclass(frozen=True)
class Evidence:
    """
    One optimizer family: its class names, what `trough` measured there, and whether that needs a warning.
    `settings` are `defaults` entries the measured setup had (Adafactor was measured without its relative step and
    parameter scaling, which change what its learning rate means).
    """

    family: str
    classes: tuple[str, ...]
    measured: str
    warn: bool = False
    settings: tuple[tuple[str, Any], ...] = ()

    def matches(self, optimizer: Any) -> bool:
        if type(optimizer).__name__ not in self.classes:
            return False
        defaults = getattr(optimizer, "defaults", {})
        return all(defaults.get(key, value) == value for key, value in self.settings)


EVIDENCE = (
    Evidence(
        "AdamW",
        (
            "AdamW",
            "Adam",
            "AdamW8bit",
            "Adam8bit",
            "AdamW32bit",
            "Adam32bit",
            "PagedAdamW",
            "PagedAdamW8bit",
            "PagedAdamW32bit",
            "PagedAdam",
            "FusedAdam",
            "DeepSpeedCPUAdam",
        ),
        "trough landed among the rates that train best at 19 of 20 sweep seeds over 4 regimes (fine-tune, LoRA, "
        "causal and masked LM from scratch)",
    ),
    Evidence(
        "Lion",
        ("Lion", "Lion8bit", "Lion32bit", "PagedLion", "PagedLion8bit", "PagedLion32bit"),
        "trough landed among the rates that train best at 10 of 10 sweep seeds over 2 regimes (GPT-2 from scratch, "
        "LoRA), but the sweep bottoms out where AdamW's does while Lion trained best 3.2x (from scratch) and 1.8x "
        "(LoRA) below AdamW's best rate: trough sat 1.8x and 1.2x above Lion's best. The sweep cannot see this, "
        "nor could confirm_steps at half the run's length (unchanged from scratch, above the window at some LoRA "
        "seeds); if training at the suggestion is unstable, a third of it is where Lion's best rate was from scratch",
        warn=True,
    ),
    Evidence(
        "Adafactor",
        ("Adafactor",),
        "trough landed in the window at 6 of 10 sweep seeds over 2 regimes (built as the Trainer's "
        "optim='adafactor'): 1 of 5 from scratch (GPT-2), up to 1.7x below the rate that trains best (with "
        "confirm_steps at half the run's length, 5 of 5), and 5 of 5 with LoRA, but 2.7x below its best rate in a "
        "wide window: Adafactor's sweep reads low against its best rate",
        warn=True,
        settings=(("relative_step", False), ("scale_parameter", False)),
    ),
    Evidence(
        "SGD",
        ("SGD",),
        "trough landed in the window at 10 of 10 sweep seeds over 2 regimes (momentum 0.9): with LoRA 1.8x below the "
        "best rate (spread 1.74x); from scratch (GPT-2) SGD trained far worse than AdamW at every rate and the grid "
        "barely separates rates from 0.01 to 3, which says little",
        warn=True,
    ),
)


def check_sweepable(optimizer: Any) -> None:
    """
    Refuse optimizers whose learning rate a range test cannot sweep: Adafactor with `relative_step=True` (the default
    of `transformers.Adafactor`) computes its own step size from the step count and ignores the param groups' `lr`.

    Raises:
        ValueError: with what to build instead.
    """
    optimizer = torch_optimizer(optimizer)
    if getattr(optimizer, "defaults", {}).get("relative_step") or any(
        g.get("relative_step") for g in optimizer.param_groups
    ):
        raise ValueError(
            f"{type(optimizer).__name__} with relative_step=True sets its own step size and ignores the learning rate, so a range test cannot sweep it. Build it with relative_step=False, scale_parameter=False, warmup_init=False and an lr (as the Trainer's optim='adafactor' does), or leave it out of the sweep."
        )


def evidence_for(optimizer: Any) -> tuple[str, Evidence | None]:
    """The optimizer's class name (accelerate's wrapper looked through) and its measured family, if any."""
    optimizer = torch_optimizer(optimizer)
    return type(optimizer).__name__, next((e for e in EVIDENCE if e.matches(optimizer)), None)


def optimizer_warning(optimizer: Any) -> str | None:
    """
    The warning for a result swept with `optimizer`: `None` where the benchmark measured its family and `trough` held
    there; otherwise what was measured, for which families, so that the user knows how far to trust the default rule.
    """
    return warning_for(*evidence_for(optimizer))


def warning_for(name: str, found: Evidence | None) -> str | None:
    """[`optimizer_warning`] from what [`evidence_for`] returned (the class name and its family, if measured)."""
    if found is not None and not found.warn:
        return None
    if found is not None:
        return f"The default rule was measured with {found.family} ({name}): {found.measured}. See docs/suggestions.md."
    measured = "; ".join(f"{e.family}: {e.measured}" for e in EVIDENCE)
    return (
        f"The suggestion benchmark has not measured {name}: the default rule's evidence is for other optimizers "
        f"({measured}). The rate that trains best also depends on how the optimizer behaves over a full run, which a "
        "short sweep does not see: confirm the suggestion with short trainings around it (confirm_steps). "
        "See docs/suggestions.md."
    )
