"""The result of a range test: per-group curves, suggestions and metadata, with JSON round trip and plotting."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import matplotlib.figure
    import torch

# `param_groups` and `apply` run code outside the core (parameter groups follow transformers' and PEFT's naming;
# `apply` is the Trainer adapter's). Those modules hand their functions in here when imported, which `import
# hf_lrfind` always does (it runs before any of its modules), so the core imports neither and no import circle forms.
_CONVENIENCES: dict[str, Callable[..., Any]] = {}


def provide(name: str, fn: Callable[..., Any]) -> None:
    """Register the function behind the [`LRFinderResult`] method `name` (`"param_groups"` or `"apply"`)."""
    _CONVENIENCES[name] = fn


def _provided(name: str) -> Callable[..., Any]:
    if name not in _CONVENIENCES:  # this module was loaded from its file, outside the package
        raise RuntimeError(f"LRFinderResult.{name} needs the package's adapters: import hf_lrfind first.")
    return _CONVENIENCES[name]


def _finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float inside it (dicts, lists, tuples) replaced by `None`, for JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _none_to_nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


@dataclass
class LRFinderResult:
    """
    Curves and suggestions of a learning-rate range test, one entry per named parameter group.

    Groups are named by `param_group["name"]` where the optimizer's groups carry one; otherwise groups with the same
    learning rate share a name: `"all"` when there is only one rate, `"group_0"`, `"group_1"`, ... otherwise.

    Attributes:
        lrs (`dict[str, list[float]]`): the learning rate applied at each recorded step, per group.
        losses (`dict[str, list[float]]`): the raw mean loss of each recorded step (NaN where it was not finite).
        smoothed_losses (`dict[str, list[float]]`): the debiased EMA of `losses`.
        suggestions (`dict[str, dict[str, float | None]]`): `suggestions[group][method]`, `None` where the curve was
            too short for that method.
        stop_reason (`dict[str, str]`): why each group's sweep ended: `"num_steps"`, `"diverged"`, `"non_finite_loss"`
            or `"too_many_skipped_steps"`.
        metadata (`dict[str, Any]`): steps run, skipped steps, tokens seen, wall time, schedule, versions, ...
    """

    lrs: dict[str, list[float]]
    losses: dict[str, list[float]]
    smoothed_losses: dict[str, list[float]]
    suggestions: dict[str, dict[str, float | None]]
    stop_reason: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        """Names of the groups, in optimizer order."""
        return list(self.lrs)

    def default_rule(self, group: str) -> str | None:
        """
        The rule a group's suggestion is read with when none is named: the strategy's choice for that group where it
        made one (`metadata["default_rules"]`: the split strategy reads the head with `probe` and a pretrained body
        with `pretrained`), else the first rule the sweep ran (`"trough"` unless `suggest` said otherwise).
        """
        chosen = self.metadata.get("default_rules", {}).get(group)
        if chosen is not None and chosen in self.suggestions.get(group, {}):
            return chosen
        return next(iter(self.suggestions.get(group, {})), None)

    def set_default_rule(self, group: str, rule: str) -> None:
        """
        Make `rule` the group's default rule: what `suggestion`, `apply`, `param_groups`, `summary` and `plot` read
        the group with when no rule is named (kept in `metadata["default_rules"]`, so a saved result keeps it).

        Args:
            group (`str`): one of the result's groups.
            rule (`str`): a rule the sweep ran for that group (a key of `result.suggestions[group]`).

        Raises:
            ValueError: unknown group, or a rule the sweep did not run for that group (nothing is changed).

        Example:

        ```python
        >>> result = find_lr(trainer, groups="auto")
        >>> result.set_default_rule("body", "trough")  # the body as the one-group range test reads it; head: probe
        >>> result.apply(trainer)
        ```
        """
        if group not in self.suggestions:
            raise ValueError(f"Unknown group {group!r}; this result has {list(self.suggestions)}.")
        if rule not in self.suggestions[group]:
            raise ValueError(
                f"The sweep did not run the rule {rule!r} for group {group!r}; it ran {list(self.suggestions[group])}. Add it to LRFinderConfig(suggest=...) and sweep again."
            )
        self.metadata.setdefault("default_rules", {})[group] = rule

    def suggestion(self, method: str | None = None, group: str | None = None) -> float:
        """
        One suggested learning rate.

        Args:
            method (`str`, *optional*): a method the sweep ran; defaults to the group's default rule (see
                [`~LRFinderResult.default_rule`]: `"trough"`; `"probe"` and `"pretrained"` for the head and
                the body of a split sweep).
            group (`str`, *optional*): the group; may be left out when the result has a single group.

        Raises:
            ValueError: unknown group or method, a missing group with several groups, or no suggestion (too short a
                curve) for that method.
        """
        if group is None:
            if len(self.groups) != 1:
                raise ValueError(f"This result has the groups {self.groups}; pass group= one of them.")
            group = self.groups[0]
        if group not in self.suggestions:
            raise ValueError(f"Unknown group {group!r}; this result has {self.groups}.")
        if method is None:
            method = self.default_rule(group)
        if method not in self.suggestions[group]:
            raise ValueError(f"The sweep did not run the method {method!r}; it ran {list(self.suggestions[group])}.")
        value = self.suggestions[group][method]
        if value is None:
            raise ValueError(
                f"{method!r} gave no suggestion for group {group!r}: its curve has too few points ({len(self.lrs[group])} recorded); run more steps or lower skip_start/skip_end."
            )
        return value

    def param_groups(
        self, model: torch.nn.Module, method: str | None = None, *, weight_decay: float = 0.0, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """
        Optimizer param groups carrying each group's suggested learning rate, with the Trainer's weight-decay split,
        ready for `torch.optim.AdamW(...)` and `Trainer(optimizers=(optimizer, None))`; see
        [`hf_lrfind.param_groups_from_result`], which takes the further keyword arguments (`groups`,
        `no_decay`, `loading_info`, `layer_decay`, `optimizer`).

        Example:

        ```python
        >>> optimizer = torch.optim.AdamW(result.param_groups(model, "trough", weight_decay=0.01))
        ```
        """
        return _provided("param_groups")(self, model, method, weight_decay=weight_decay, **kwargs)

    def apply(self, target: Any, method: str | None = None, *, scheduler: Any = None) -> None:
        """
        Make the suggestions the peak learning rates of the training that follows.

        Args:
            target (`transformers.Trainer` or `torch.optim.Optimizer`):
                A Trainer (see [`hf_lrfind.apply_result`]), or the optimizer of your own loop, as
                `accelerator.prepare` returned it or plain: each param group's rate is set.
            method (`str`, *optional*): the rule; defaults to each group's default rule (`"trough"`; `"probe"` and
                `"pretrained"` for the head and the body of a split sweep).
            scheduler (*optional*): the loop's LR scheduler (accelerate's `AcceleratedScheduler` or a torch one,
                such as transformers' `get_linear_schedule_with_warmup`): its base rates are set too, so that the
                schedule peaks at the suggestion. Without it a scheduler made later starts from the rates set.

        Example:

        ```python
        >>> result = LRFinder(model, optimizer, accelerator=accelerator).range_test(train_dataloader)
        >>> result.apply(optimizer, scheduler=lr_scheduler)
        ```
        """
        from .peak import apply_to_optimizer

        if hasattr(target, "param_groups"):  # an optimizer, prepared by accelerate or not
            apply_to_optimizer(self, target, scheduler, method)
            return
        if scheduler is not None:
            raise TypeError("scheduler= goes with an optimizer; a Trainer's own scheduler is set by apply(trainer).")
        _provided("apply")(self, target, method)

    def summary(self, method: str | None = None, *, table: bool = False) -> str:
        """
        The result in a few lines: the rate to use for each group (by `method`, or the default rule, named), whether
        its curve can be trusted, what the sweeps ran and what they cost, then the other rules' suggestions (every
        rule, a row per group, with `table=True`).
        """
        from .summary import summarize

        return summarize(self, method, table=table)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; non-finite numbers (losses, also each sweep's and trial's in `metadata`) become `None`."""
        return _finite_or_none(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRFinderResult:
        """Inverse of [`to_dict`]."""
        data = dict(data)
        data["losses"] = {g: _none_to_nan(v) for g, v in data["losses"].items()}
        data["smoothed_losses"] = {g: _none_to_nan(v) for g, v in data["smoothed_losses"].items()}
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the result as JSON to `path` (parent folders are created)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, allow_nan=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LRFinderResult:
        """Read a result written by [`save`]."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def plot(
        self,
        path: str | os.PathLike | None = None,
        ax: Any = None,
        *,
        show_raw: bool = True,
        method: str | None = None,
    ) -> matplotlib.figure.Figure:
        """Plot loss against learning rate; see [`hf_lrfind.core.plot.plot_result`]."""
        from .plot import plot_result

        return plot_result(self, path=path, ax=ax, show_raw=show_raw, method=method)
