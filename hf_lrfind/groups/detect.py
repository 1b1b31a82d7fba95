"""Which parameters are the new head, the pretrained body, a PEFT adapter or a layer of the stack: [`detect_groups`].

Imports only torch at module level; peft is imported inside the function that reads its adapter names.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch

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
    found = {k: v for k, v in groups.items() if v}
    if not groups["head"]:
        # One group is not what groups="auto" promises: say so where it is seen (two groups are the usual LoRA case).
        log = logger.warning if len(found) == 1 else logger.info
        log(
            f"No new head found (e.g. a language-model head tied to the input embeddings is pretrained, or a model trained from scratch): every trainable parameter outside a PEFT adapter is in 'body', so the groups are {list(found)}."
        )
    return found


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
