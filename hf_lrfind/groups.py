"""Parameter groups for discriminative learning rates: which parameters are the new head, the pretrained body, a PEFT
adapter or a layer of the stack, and optimizer param groups built from them with the Trainer's weight-decay split.

Imports only torch at module level; transformers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import re
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .result import LRFinderResult

logger = logging.getLogger(__name__)

# The first `<container>.<index>.` in a parameter name marks a layer of a stack: BERT `encoder.layer.N.`, GPT-2
# `transformer.h.N.`, Llama `model.layers.N.`, T5 `encoder.block.N.`, ViT-style `blocks.N.`.
LAYER_PATTERN = re.compile(r"(?:^|\.)(layers?|h|blocks?)\.(\d+)(?:\.|$)")
_GLOB_CHARS = re.compile(r"[*?\[]")


def _named_trainable(model: torch.nn.Module) -> tuple[list[tuple[str, torch.nn.Parameter]], list[torch.nn.Parameter]]:
    """Trainable `(name, param)` pairs (tied parameters once, under the name `named_parameters()` keeps) and the frozen
    parameters."""
    trainable, frozen = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            trainable.append((name, p))
        else:
            frozen.append(p)
    return trainable, frozen


def _summary(names: Sequence[str], max_patterns: int = 6) -> str:
    """A few name patterns covering `names`: layer indices collapsed to `*` (when the names hold more than one), names
    cut at the deepest level that keeps at most `max_patterns` distinct patterns."""
    index = re.compile(r"(?<=\.)\d+(?=\.|$)")
    several = len({tuple(index.findall(n)) for n in names}) > 1
    collapsed = [(index.sub("*", n) if several else n).split(".") for n in names]
    depth = max((len(parts) for parts in collapsed), default=0)
    patterns: list[str] = []
    for k in range(1, depth + 1):
        candidate = list(dict.fromkeys(".".join(p[:k]) + (".*" if len(p) > k else "") for p in collapsed))
        if len(candidate) > max_patterns and patterns:
            break
        patterns = candidate
    return ", ".join(patterns)


def _log_groups(groups: Mapping[str, list[str]], params: Mapping[str, torch.nn.Parameter], frozen: list) -> None:
    for name, members in groups.items():
        numel = sum(params[n].numel() for n in members)
        logger.info(f"Group {name!r}: {len(members)} tensors, {numel:,} parameters: {_summary(members)}")
    if frozen:
        logger.info(
            f"Left out {len(frozen)} frozen tensors ({sum(p.numel() for p in frozen):,} parameters): they are not trained."
        )


def _peft_markers(model: torch.nn.Module) -> set[str] | None:
    """Name prefixes of PEFT adapter parameters (`lora_`, `ia3_`, `prompt_encoder`, ...), from peft's own mapping of
    tuner types to prefixes; `None` when the model carries no PEFT config."""
    peft_config = getattr(model, "peft_config", None)
    if not isinstance(peft_config, Mapping) or not peft_config:
        return None
    markers: set[str] = set()
    prefix = getattr(getattr(model, "base_model", None), "prefix", None)  # peft's tuner models (LoraModel.prefix)
    if isinstance(prefix, str) and prefix:
        markers.add(prefix)
    try:
        from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
    except ImportError:
        PEFT_TYPE_TO_PREFIX_MAPPING = {}
    for config in peft_config.values():
        prefix = PEFT_TYPE_TO_PREFIX_MAPPING.get(getattr(config, "peft_type", None))
        if prefix:
            markers.add(prefix)
        if getattr(config, "is_prompt_learning", False):
            markers.add("prompt_encoder")
    if not markers:
        logger.warning(
            "This PEFT model's adapter type is unknown to hf_lrfind, so its adapter parameters cannot be told apart; pass explicit groups."
        )
    return markers


def _new_keys(loading_info: Any) -> set[str]:
    if not isinstance(loading_info, Mapping) or "missing_keys" not in loading_info:
        raise TypeError(
            f"loading_info must be the dict that from_pretrained(..., output_loading_info=True) returns as its second value (with 'missing_keys'); got {type(loading_info).__name__}."
        )
    keys = {str(k) for k in loading_info["missing_keys"]}
    # Size-mismatched weights loaded with ignore_mismatched_sizes=True are re-initialised too: (key, ckpt, model).
    for entry in loading_info.get("mismatched_keys") or ():
        keys.add(str(entry[0] if isinstance(entry, (tuple, list)) else entry))
    return keys


def _is_new(aliases: Sequence[str], new_keys: set[str]) -> bool:
    """A parameter is new when every name it goes by is a missing key, matched as a suffix at a `.` boundary so that
    wrapper prefixes (`module.`, peft's `base_model.model.`) do not matter. A tied weight that was loaded under one of
    its names is pretrained."""

    def missing(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[i:]) in new_keys for i in range(len(parts)))

    return all(missing(a) for a in aliases)


def _auto_groups(
    model: torch.nn.Module, trainable: list[tuple[str, torch.nn.Parameter]], loading_info: Any
) -> dict[str, list[str]]:
    markers = _peft_markers(model)
    inner = model
    if markers is not None and callable(getattr(model, "get_base_model", None)):
        inner = model.get_base_model()  # PeftModel -> the transformers model it wraps
    base = getattr(inner, "base_model", None)
    if base is None and loading_info is None and markers is None:
        raise ValueError(
            f"groups='auto' cannot tell the new head from the pretrained body of a {type(model).__name__}: it has no `base_model` (not a transformers PreTrainedModel). Pass loading_info= (the second value of from_pretrained(..., output_loading_info=True)), or explicit groups such as {{'head': ['classifier.*'], 'body': ['*']}}."
        )
    base_ids = {id(p) for p in base.parameters()} if isinstance(base, torch.nn.Module) else None
    new_keys = _new_keys(loading_info) if loading_info is not None else None
    aliases: dict[int, list[str]] = defaultdict(list)
    if new_keys is not None:
        for name, p in model.named_parameters(remove_duplicate=False):
            aliases[id(p)].append(name)

    groups: dict[str, list[str]] = {"head": [], "adapter": [], "body": []}
    for name, p in trainable:
        parts = name.split(".")
        if markers is not None and "modules_to_save" in parts:
            groups["head"].append(name)
        elif markers and any(part.startswith(m) for part in parts for m in markers):
            groups["adapter"].append(name)
        elif new_keys is not None:
            groups["head" if _is_new(aliases[id(p)], new_keys) else "body"].append(name)
        elif base_ids is not None and id(p) not in base_ids:
            groups["head"].append(name)
        else:
            groups["body"].append(name)
    if new_keys is not None and not groups["head"] and new_keys:
        logger.warning(
            f"loading_info reports {len(new_keys)} newly initialised keys (e.g. {sorted(new_keys)[:3]}) but none is a trainable parameter of this model; pass the loading info of this very model."
        )
    if not groups["head"]:
        logger.info(
            "No new head found (e.g. a language-model head tied to the input embeddings is pretrained): every trainable parameter outside a PEFT adapter is in 'body'."
        )
    return {k: v for k, v in groups.items() if v}


def _layer_groups(
    groups: Mapping[str, list[str]], order: Mapping[str, int], layer_decay: float
) -> dict[str, list[str]]:
    """Split every group but `head` into `embeddings`, `layer_0` .. `layer_{L-1}` (stacks numbered one after another in
    model order, e.g. encoder then decoder); unlayered parameters before the first layer are `embeddings`, the others
    (final norm, pooler, ...) join the top layer."""
    rest = sorted((n for g, names in groups.items() if g != "head" for n in names), key=order.__getitem__)
    located: dict[str, tuple[str, int]] = {}
    stacks: dict[str, set[int]] = {}
    for name in rest:
        m = LAYER_PATTERN.search(name)
        if m:
            stack = name[: m.end(1)]
            located[name] = (stack, int(m.group(2)))
            stacks.setdefault(stack, set()).add(int(m.group(2)))
    if not stacks:
        raise ValueError(
            f"layer_decay={layer_decay} needs a stack of layers, but no trainable body parameter name has a layer index like 'encoder.layer.0.', 'h.0.', 'layers.0.' or 'block.0.' (e.g. {rest[:3]}). Pass explicit groups and per-group rates instead."
        )
    index: dict[tuple[str, int], int] = {}
    for stack, indices in stacks.items():
        for i in sorted(indices):
            index[(stack, i)] = len(index)
    top = len(index) - 1
    first = min(order[n] for n in located)
    layered: dict[str, list[str]] = {}
    if "head" in groups:
        layered["head"] = list(groups["head"])
    buckets: dict[str, list[str]] = defaultdict(list)
    for name in rest:
        if name in located:
            buckets[f"layer_{index[located[name]]}"].append(name)
        elif order[name] < first:
            buckets["embeddings"].append(name)
        else:
            buckets[f"layer_{top}"].append(name)
    for i in range(top, -1, -1):
        if buckets.get(f"layer_{i}"):
            layered[f"layer_{i}"] = buckets[f"layer_{i}"]
    if buckets.get("embeddings"):
        layered["embeddings"] = buckets["embeddings"]
    return layered


def _as_patterns(name: str, value: Any) -> list[str]:
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, Sequence) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise TypeError(
            f"Group {name!r} must map to a name pattern or a non-empty list of them (fnmatch globs such as 'classifier.*'); got {value!r}."
        )
    return list(patterns)


def _explicit_groups(
    model: torch.nn.Module, spec: Mapping[str, Any], trainable: list[tuple[str, torch.nn.Parameter]]
) -> dict[str, list[str]]:
    compiled = {g: _as_patterns(g, v) for g, v in spec.items()}
    exact = {g: {p for p in pats if not _GLOB_CHARS.search(p)} for g, pats in compiled.items()}
    globs = {g: [p for p in pats if _GLOB_CHARS.search(p)] for g, pats in compiled.items()}

    def group_of(name: str) -> str | None:
        for g in compiled:
            if name in exact[g] or any(fnmatch.fnmatchcase(name, p) for p in globs[g]):
                return g
        return None

    all_names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    for g in compiled:
        if not any(n in exact[g] or any(fnmatch.fnmatchcase(n, p) for p in globs[g]) for n in all_names):
            raise ValueError(
                f"The patterns of group {g!r} ({compiled[g][:3]}) match no parameter of this model, e.g. {all_names[:3]}; patterns are fnmatch globs on full parameter names, such as 'classifier.*' or '*.layer.11.*'."
            )
    groups: dict[str, list[str]] = {g: [] for g in compiled}
    unmatched = []
    for name, _ in trainable:
        g = group_of(name)
        if g is None:
            unmatched.append(name)
        else:
            groups[g].append(name)
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} trainable parameters match no group pattern, e.g. {unmatched[:5]}; add patterns for them, or end the mapping with a catch-all group such as 'body': ['*']."
        )
    for g, members in groups.items():
        if not members:
            logger.info(f"Group {g!r} matches only frozen or tied parameters; it is left out.")
    return {g: v for g, v in groups.items() if v}


def _optimizer_groups(
    optimizer: Any, trainable: list[tuple[str, torch.nn.Parameter]], model: torch.nn.Module
) -> dict[str, list[str]]:
    if optimizer is None:
        raise ValueError("groups='optimizer' takes the groups from an optimizer's named param groups; pass optimizer=.")
    owner: dict[int, str] = {}
    for i, group in enumerate(optimizer.param_groups):
        if "name" not in group:
            raise ValueError(
                f"Param group {i} of the optimizer has no 'name' entry; build it with named groups ({{'params': ..., 'name': 'head'}}), or pass groups as a mapping of name patterns."
            )
        for p in group["params"]:
            owner[id(p)] = str(group["name"])
    known = {id(p) for p in model.parameters()}
    if any(pid not in known for pid in owner):
        raise ValueError("The optimizer holds parameters that are not in this model; pass the model it optimizes.")
    groups: dict[str, list[str]] = {str(g["name"]): [] for g in optimizer.param_groups}
    missing = []
    for name, p in trainable:
        if id(p) in owner:
            groups[owner[id(p)]].append(name)
        else:
            missing.append(name)
    if missing:
        logger.warning(
            f"{len(missing)} trainable parameters are in none of the optimizer's param groups (e.g. {missing[:3]}); they are left out, as the optimizer leaves them untrained."
        )
    return {g: v for g, v in groups.items() if v}


def detect_groups(
    model: torch.nn.Module,
    groups: str | Mapping[str, str | Sequence[str]] = "auto",
    *,
    loading_info: Mapping[str, Any] | None = None,
    layer_decay: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, list[str]]:
    """
    Split a model's trainable parameters into named groups that get their own learning rate.

    Only trainable parameters (`requires_grad`) are placed; frozen ones are left out (and counted in the log). Tied
    parameters appear once, under the name `model.named_parameters()` keeps (GPT-2: `transformer.wte.weight`, not
    `lm_head.weight`). Which parameters went where is logged at INFO level (tensor and parameter counts, name
    patterns).

    `groups="auto"` gives, in this order (parameter group 0, the one a sweep's `start_lr`/`end_lr` refer to, is the
    head):

    - `head`: the newly added parameters. With `loading_info`, those whose names are among its `missing_keys` or
      `mismatched_keys` (matched as a suffix at a `.`, so wrapper prefixes do not matter; a tied weight loaded under
      another name is not new). Without it, for a transformers model, every parameter outside `model.base_model`
      (`classifier.*` for BERT; BERT's pooler is inside the base model). A language-model head tied to the input
      embeddings is pretrained and belongs to the body, so GPT-2-style LMs have no `head` group; an untied LM head is
      outside the base model and counts as `head` unless `loading_info` says it was loaded.
    - `adapter`: for a PEFT model, the adapter parameters (names with a component starting with the tuner's prefix,
      taken from peft: `lora_`, `ia3_`, ..., or `prompt_encoder`). PEFT's `modules_to_save` copies go to `head`.
    - `body`: the other trainable parameters (the pretrained rest).

    Groups that come out empty are left out.

    Args:
        model (`torch.nn.Module`):
            The model (unwrapped: not a DDP/FSDP wrapper), possibly a `peft.PeftModel`.
        groups (`str` or `Mapping[str, str | Sequence[str]]`, *optional*, defaults to `"auto"`):
            `"auto"` (above); `"optimizer"`: one group per named param group of `optimizer` (groups sharing a name
            merge); or a mapping from group name to fnmatch glob patterns on full parameter names, e.g.
            `{"head": ["classifier.*"], "body": ["*"]}`. A parameter goes to the first group (in mapping order) with
            a matching pattern; a trainable parameter that matches none, or a group whose patterns match no
            parameter at all, raises.
        loading_info (`Mapping`, *optional*):
            The second value of `from_pretrained(..., output_loading_info=True)`; with `"auto"`, its missing keys
            are the head.
        layer_decay (`float`, *optional*):
            With `"auto"`: split everything but the head into `embeddings`, `layer_0` .. `layer_{L-1}` (found from
            names like `encoder.layer.N.`, `h.N.`, `layers.N.`, `block.N.`; several stacks, e.g. encoder and
            decoder, are numbered one after the other in model order) and keep `head` on top. Unlayered parameters
            before the first layer join `embeddings`, the others (final norm, pooler) join the top layer. Groups
            come top-down: `head`, `layer_{L-1}`, ..., `layer_0`, `embeddings`. See [`layer_decay_ratios`] for the
            rates. Must be in (0, 1].
        optimizer (`torch.optim.Optimizer`, *optional*):
            The optimizer to read the groups from with `groups="optimizer"`.

    Returns:
        `dict[str, list[str]]`: group name -> parameter names, in model order within each group.

    Raises:
        ValueError: a model without `base_model` and without `loading_info` under `"auto"`; unmatched parameters or
            empty patterns under explicit groups; no layers found, or `layer_decay` out of range or combined with
            non-auto groups; unnamed optimizer param groups.
        TypeError: a malformed `groups` or `loading_info`.

    Example:

    ```python
    >>> model, info = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True)
    >>> groups = detect_groups(model, loading_info=info)
    >>> list(groups)
    ['head', 'body']
    >>> groups["head"]
    ['classifier.weight', 'classifier.bias']
    ```
    """
    if layer_decay is not None:
        if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1:
            raise ValueError(f"layer_decay ({layer_decay!r}) must be a float in (0, 1], e.g. 0.9.")
        if groups != "auto":
            raise ValueError(
                f"layer_decay builds its groups itself and works with groups='auto' only; got groups={groups!r}."
            )
    trainable, frozen = _named_trainable(model)
    if not trainable:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all have requires_grad=False).")
    if groups == "auto":
        result = _auto_groups(model, trainable, loading_info)
    elif groups == "optimizer":
        result = _optimizer_groups(optimizer, trainable, model)
    elif isinstance(groups, Mapping):
        if not groups:
            raise ValueError("groups is an empty mapping; give at least one group, e.g. {'all': ['*']}.")
        result = _explicit_groups(model, groups, trainable)
    elif isinstance(groups, str):
        raise ValueError(
            f"Unknown groups {groups!r}: pass 'auto' (head, body, adapter), 'optimizer' (the optimizer's own param groups) or a mapping from group name to name patterns; to sweep the optimizer's groups together, leave groups out (groups=None) in find_lr, LRFinder and the callback."
        )
    else:
        raise TypeError(
            f"groups must be 'auto', 'optimizer' or a mapping from group name to name patterns; got {groups!r}."
        )
    if layer_decay is not None:
        order = {n: i for i, (n, _) in enumerate(trainable)}
        result = _layer_groups(result, order, float(layer_decay))
    _log_groups(result, dict(trainable), frozen)
    return result


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
        method (`str`, *optional*): the suggestion rule to use; defaults to the first the sweep ran (`"trough"`).
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
    names and 1.0 for others. Only the joint strategy reads the ratios; the sequential one sweeps each group on its own.

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
