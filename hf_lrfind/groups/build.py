"""Optimizer param groups from detected groups: layer-decay ratios, the Trainer's weight-decay split, the groups of a
result's suggestions, and the sweep's regrouped optimizer.

Imports only torch at module level; transformers is imported inside the function that needs its weight-decay rule.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..core.result import provide
from .detect import detect_groups

if TYPE_CHECKING:
    from ..core.result import LRFinderResult

logger = logging.getLogger(__name__)


def layer_decay_ratios(groups: Mapping[str, Any] | Sequence[str], layer_decay: float) -> dict[str, float]:
    """
    The learning-rate ratio of each layer-decay group to the head: `head` 1.0, the top layer `layer_decay`, each layer
    below one more factor of `layer_decay`, and `embeddings` one factor below `layer_0`. With `L` layers:
    `layer_i` gets `layer_decay ** (L - i)` and `embeddings` `layer_decay ** (L + 1)`. The convention holds whether or
    not the model has a head group (a tied LM has none; its top layer still gets `layer_decay ** 1`).

    Args:
        groups (`Mapping[str, Any]` or `Sequence[str]`): the groups of [`detect_groups`] with `layer_decay`, or
            their names.
        layer_decay (`float`): the factor between neighbouring layers, in (0, 1].

    Returns:
        `dict[str, float]`: group name -> ratio, in the order of `groups`.

    Raises:
        ValueError: `layer_decay` out of range, a group name that is not `head`, `embeddings` or `layer_<i>`, or no
            layer groups.

    Example:

    ```python
    >>> layer_decay_ratios(["head", "layer_1", "layer_0", "embeddings"], 0.5)
    {'head': 1.0, 'layer_1': 0.5, 'layer_0': 0.25, 'embeddings': 0.125}
    ```
    """
    if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay ({layer_decay!r}) must be a float in (0, 1], e.g. 0.9.")
    names = list(groups)
    layers = {}
    for name in names:
        m = re.fullmatch(r"layer_(\d+)", name)
        if m:
            layers[name] = int(m.group(1))
        elif name not in ("head", "embeddings"):
            raise ValueError(
                f"layer_decay_ratios knows the groups 'head', 'embeddings' and 'layer_<i>'; got {name!r}. Build the groups with detect_groups(model, layer_decay=...)."
            )
    if not layers:
        raise ValueError(f"No 'layer_<i>' group among {names}; build them with detect_groups(model, layer_decay=...).")
    num_layers = max(layers.values()) + 1
    ratios = {}
    for name in names:
        depth = 0 if name == "head" else num_layers + 1 if name == "embeddings" else num_layers - layers[name]
        ratios[name] = float(layer_decay) ** depth
    return ratios


def no_decay_names(model: torch.nn.Module, trainer: Any = None) -> set[str]:
    """
    Names of the parameters the Trainer leaves out of weight decay (biases, LayerNorm/RMSNorm weights, ...): all
    parameter names minus `Trainer.get_decay_parameter_names(model)`.

    Args:
        model (`torch.nn.Module`): the model.
        trainer (`transformers.Trainer`, *optional*): a trainer whose own (possibly overridden)
            `get_decay_parameter_names` is used; without one, transformers' implementation is.

    Returns:
        `set[str]`: parameter names, as `model.named_parameters(remove_duplicate=False)` gives them.
    """
    if trainer is not None:
        decay = trainer.get_decay_parameter_names(model)
    else:
        try:
            from transformers import Trainer
        except ImportError as e:
            raise ImportError(
                "The Trainer's weight-decay split needs transformers: pip install transformers, or pass no_decay= (the names of the parameters without weight decay)."
            ) from e
        # `get_decay_parameter_names` does not use the trainer itself; calling it unbound keeps the exact rule.
        decay = Trainer.get_decay_parameter_names(None, model)
    decay = set(decay)
    return {n for n, _ in model.named_parameters(remove_duplicate=False) if n not in decay}


def build_param_groups(
    model: torch.nn.Module,
    groups: Mapping[str, Sequence[str]],
    lrs: float | Mapping[str, float],
    *,
    weight_decay: float = 0.0,
    no_decay: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """
    Optimizer param groups for named parameter groups, each at its own learning rate, with the Trainer's weight-decay
    split kept inside each group: a group yields up to two param groups, both carrying its `"name"`, the first with
    `weight_decay` and the second (biases, norms) with 0. Empty param groups and frozen parameters are dropped.

    Args:
        model (`torch.nn.Module`): the model the names refer to.
        groups (`Mapping[str, Sequence[str]]`): group name -> parameter names, as [`detect_groups`] returns.
        lrs (`float` or `Mapping[str, float]`): one rate for all groups, or one per group.
        weight_decay (`float`, *optional*, defaults to 0.0): the weight decay of the decayed parameters.
        no_decay (`Collection[str]`, *optional*): names of the parameters without weight decay; defaults to
            [`no_decay_names`] (the Trainer's rule).

    Returns:
        `list[dict]`: param groups with `"name"`, `"params"`, `"lr"` and `"weight_decay"`, ready for
        `torch.optim.AdamW(...)` and `Trainer(optimizers=(optimizer, None))`.

    Raises:
        ValueError: a group without a rate, an unknown parameter name, or a parameter in two groups.

    Example:

    ```python
    >>> groups = detect_groups(model)
    >>> optimizer = torch.optim.AdamW(build_param_groups(model, groups, {"head": 1e-3, "body": 3e-5}, weight_decay=0.01))
    ```
    """
    if isinstance(lrs, Mapping):
        missing = [g for g in groups if g not in lrs]
        if missing:
            raise ValueError(f"No learning rate for the groups {missing}; lrs has {list(lrs)}. Give one per group.")
        extra = [g for g in lrs if g not in groups]
        if extra:
            logger.warning(f"lrs has rates for {extra}, which are not among the groups {list(groups)}; ignored.")
        rates = {g: float(lrs[g]) for g in groups}
    else:
        rates = {g: float(lrs) for g in groups}
    named = dict(model.named_parameters())
    skip = set(no_decay) if no_decay is not None else no_decay_names(model)
    seen: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for g, names in groups.items():
        decay, plain = [], []
        for n in names:
            if n not in named:
                raise ValueError(
                    f"Group {g!r} names {n!r}, which is not a parameter of this model (e.g. {list(named)[:3]}); build the groups from this model with detect_groups."
                )
            if n in seen:
                raise ValueError(
                    f"{n!r} is in both group {seen[n]!r} and group {g!r}; put each parameter in one group."
                )
            seen[n] = g
            if named[n].requires_grad:
                (plain if n in skip else decay).append(named[n])
        for params, wd in ((decay, weight_decay), (plain, 0.0)):
            if params:
                out.append({"name": g, "params": params, "lr": rates[g], "weight_decay": wd})
    left = [n for n, p in named.items() if p.requires_grad and n not in seen]
    if left:
        logger.warning(
            f"{len(left)} trainable parameters are in no group (e.g. {left[:3]}); the optimizer will not train them."
        )
    return out


def param_groups_from_result(
    result: LRFinderResult,
    model: torch.nn.Module,
    method: str | None = None,
    *,
    groups: str | Mapping[str, str | Sequence[str]] | None = None,
    weight_decay: float = 0.0,
    no_decay: Collection[str] | None = None,
    loading_info: Mapping[str, Any] | None = None,
    layer_decay: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[dict[str, Any]]:
    """
    Optimizer param groups carrying each group's suggested learning rate, with the Trainer's weight-decay split.

    The groups are, in order of preference: `groups` (anything [`detect_groups`] takes), the mapping the sweep stored
    in `result.metadata["groups"]`, one group of every trainable parameter when the result has the single group
    `"all"`, or `detect_groups(model, "auto")`. Every group needs a suggestion in the result.

    Args:
        result ([`LRFinderResult`]): the range test's result.
        model (`torch.nn.Module`): the model to optimize (the one the sweep ran on, or an identical one).
        method (`str`, *optional*): the suggestion rule to use; defaults to each group's default rule (see
            [`~LRFinderResult.default_rule`]).
        groups (*optional*): the groups, as for [`detect_groups`].
        weight_decay (`float`, *optional*, defaults to 0.0): the weight decay of the decayed parameters.
        no_decay (`Collection[str]`, *optional*): names without weight decay; defaults to the Trainer's rule.
        loading_info, layer_decay, optimizer (*optional*): passed to [`detect_groups`].

    Returns:
        `list[dict]`: param groups for `torch.optim.AdamW(...)` / `Trainer(optimizers=(optimizer, None))`.

    Raises:
        ValueError: a group that the result has no curve or no suggestion for.

    Example:

    ```python
    >>> optimizer = torch.optim.AdamW(result.param_groups(model, "trough", weight_decay=0.01))
    >>> trainer = Trainer(model=model, args=args, train_dataset=ds, optimizers=(optimizer, None))
    ```
    """
    stored = result.metadata.get("groups")
    if groups is not None:
        mapping = detect_groups(model, groups, loading_info=loading_info, layer_decay=layer_decay, optimizer=optimizer)
    elif stored:
        mapping = detect_groups(model, stored)  # exact names are patterns that match themselves
    elif result.groups == ["all"]:
        mapping = {"all": [n for n, p in model.named_parameters() if p.requires_grad]}
    else:
        mapping = detect_groups(model, "auto", loading_info=loading_info, layer_decay=layer_decay)
    unknown = [g for g in mapping if g not in result.suggestions]
    if unknown:
        raise ValueError(
            f"The result has no curve for the groups {unknown}; it has {result.groups}. Pass groups= with the groups the sweep used."
        )
    lrs = {g: result.suggestion(method, g) for g in mapping}
    logger.info(
        f"Suggested learning rates ({method or 'default rule'}): {', '.join(f'{g}={lr:.3g}' for g, lr in lrs.items())}"
    )
    return build_param_groups(model, mapping, lrs, weight_decay=weight_decay, no_decay=no_decay)


DEFAULT_JOINT_RATIOS = {"head": 1.0, "adapter": 1.0, "body": 0.1}


def regroup_optimizer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    groups: str | Mapping[str, str | Sequence[str]] = "auto",
    *,
    ratios: Mapping[str, float] | None = None,
    layer_decay: float | None = None,
    loading_info: Mapping[str, Any] | None = None,
    weight_decay: float | None = None,
    no_decay: Collection[str] | None = None,
) -> tuple[torch.optim.Optimizer, dict[str, list[str]]]:
    """
    A new optimizer of the same class and defaults as `optimizer`, over named groups, for a per-group sweep. The user's
    optimizer is not touched.

    Each group's lr is the lr of `optimizer`'s first param group times its ratio: `ratios` when given, else the layer
    decay ratios with `layer_decay`, else [`DEFAULT_JOINT_RATIOS`] (body at a tenth of the head) for the groups it
    names and 1.0 for others. Only the joint strategy reads the ratios; the split and sequential ones set
    each phase's rates themselves.

    Returns:
        `tuple[torch.optim.Optimizer, dict[str, list[str]]]`: the optimizer and the group -> parameter-names mapping.
    """
    mapping = detect_groups(model, groups, loading_info=loading_info, layer_decay=layer_decay, optimizer=optimizer)
    if ratios is None:
        ratios = layer_decay_ratios(mapping, layer_decay) if layer_decay is not None else {}
        ratios = {g: ratios.get(g, DEFAULT_JOINT_RATIOS.get(g, 1.0)) for g in mapping}
    missing = [g for g in mapping if g not in ratios]
    if missing:
        raise ValueError(f"ratios has no value for the groups {missing}; give one ratio per group of {list(mapping)}.")
    base = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    defaults = dict(optimizer.defaults)
    if weight_decay is None:
        weight_decay = defaults.get("weight_decay", 0.0)
    param_groups = build_param_groups(
        model, mapping, {g: base * ratios[g] for g in mapping}, weight_decay=weight_decay, no_decay=no_decay
    )
    cls = type(getattr(optimizer, "optimizer", optimizer))  # accelerate's AcceleratedOptimizer wraps the real one
    # Pass the hyperparameters the constructor takes (AdamW's defaults hold keys its __init__ refuses), then give
    # every group the rest of the user's defaults, as torch's add_param_group would.
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in defaults.items() if k in accepted and k not in ("lr", "weight_decay")}
    new = cls(param_groups, **kwargs)
    for group in new.param_groups:
        for key, value in defaults.items():
            group.setdefault(key, value)
    return new, mapping


provide("param_groups", param_groups_from_result)
