"""One optimizer step through accelerate, as the engine's `step_fn`: micro-batches, mixed precision, the backward pass
with each micro-batch's loss weighted by its label tokens across micro-batches and processes, clipping, the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch

from ..core.sweep import StepOutput
from ..data import IGNORE_INDEX

if TYPE_CHECKING:
    from accelerate import Accelerator


def cycle(dataloader: Iterable[Any]) -> Iterator[Any]:
    """Batches of `dataloader`, starting over when it is exhausted; a ValueError when it yields nothing."""
    while True:
        iterator = iter(dataloader)
        empty = True
        try:
            for batch in iterator:
                empty = False
                yield batch
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        if empty:
            raise ValueError("The dataloader yielded no batches; give it at least one batch (check its dataset).")


def check_not_empty(dataloader: Any) -> None:
    try:
        n = len(dataloader)
    except TypeError:
        return
    if n == 0:
        raise ValueError(
            "The dataloader is empty (len 0); give it at least one batch (a dataset larger than the batch size with drop_last=True, for instance)."
        )


def _unwrapped(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    model = accelerator.unwrap_model(model)
    get_base = getattr(model, "get_base_model", None)  # PEFT
    return get_base() if callable(get_base) else model


def _shifts_labels(model: torch.nn.Module) -> bool:
    """Whether the model is a causal LM that shifts its labels by one inside (so `labels[..., 1:]` are the targets)."""
    name = type(model).__name__
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return True
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    return name in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


def _first_tensor(batch: Any) -> torch.Tensor | None:
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else [batch]
    return next((v for v in values if isinstance(v, torch.Tensor) and v.ndim > 0), None)


def _labels(batch: Any) -> Any:
    if isinstance(batch, Mapping):
        return batch.get("labels")
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[1]
    return None


def _weight(batch: Any, shifts: bool, like: torch.Tensor) -> torch.Tensor:
    """
    What a micro-batch's mean loss is averaged over, as a 0-d tensor like `like`: its label tokens (`labels != -100`,
    `labels[..., 1:]` for a causal LM) for token-level labels, else its number of examples.
    """
    labels = _labels(batch)
    if isinstance(labels, torch.Tensor) and labels.ndim >= 2 and not labels.is_floating_point():
        if shifts:
            labels = labels[..., 1:]
        return (labels != IGNORE_INDEX).sum().to(like.dtype)
    first = _first_tensor(batch)
    return like.new_full((), float(first.shape[0] if first is not None else 1))


def input_tokens(batch: Any) -> torch.Tensor | None:
    """Input tokens of a micro-batch: the attention mask's sum, or the number of input ids; None if neither is there."""
    if isinstance(batch, Mapping):
        if isinstance(batch.get("attention_mask"), torch.Tensor):
            return batch["attention_mask"].sum()
        if isinstance(batch.get("input_ids"), torch.Tensor):
            ids = batch["input_ids"]
            return ids.new_full((), ids.numel())
    return None


def _forward(model: torch.nn.Module, batch: Any) -> Any:
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return model(batch[0])
    return model(batch)


def _loss(outputs: Any, batch: Any, loss_fn: Callable[[Any, Any], torch.Tensor] | None) -> torch.Tensor:
    if loss_fn is not None:
        loss = loss_fn(outputs, batch)
    elif isinstance(outputs, Mapping):
        loss = outputs.get("loss")
    else:
        loss = getattr(outputs, "loss", None)
    if loss is None:
        raise ValueError(
            "The model returned no loss: give the batches a 'labels' entry (transformers models compute their loss from it), or pass loss_fn=(outputs, batch) -> loss to LRFinder."
        )
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"The loss must be a 0-d tensor (the batch mean), got {shape}; reduce it with .mean().")
    return loss


def make_step_fn(
    acc: Accelerator,
    model: torch.nn.Module,
    optimizer: Any,
    batches: Iterator[Any],
    grad_accum_steps: int,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None,
    max_grad_norm: float | None,
) -> Callable[[], StepOutput]:
    """
    The engine's `step_fn` for a model and optimizer run through `acc`: `grad_accum_steps` micro-batches through
    `accelerator.autocast` and `accelerator.backward`, each micro-batch's loss weighted by its label tokens (its
    examples for labels that are not token-level) across micro-batches and processes, clipping, the optimizer step.
    The returned loss is the step's mean loss over all of them.
    """
    from accelerate.utils import send_to_device

    world = acc.num_processes
    # accelerate's backward divides by the accelerator's own gradient_accumulation_steps; undo that.
    factor = world * acc.gradient_accumulation_steps
    shifts = _shifts_labels(_unwrapped(acc, model))
    # float64 makes (loss * w) / w give back loss exactly; MPS has no float64.
    dtype = torch.float32 if acc.device.type == "mps" else torch.float64
    like = torch.zeros((), dtype=dtype, device=acc.device)
    gradient_state = acc.gradient_state
    simple = grad_accum_steps == 1 and factor == 1

    def step() -> StepOutput:
        micro = [
            send_to_device(next(batches), acc.device, non_blocking=acc.non_blocking) for _ in range(grad_accum_steps)
        ]
        if simple:  # one batch on one process: its mean loss is the step's, nothing to weigh
            return single(micro[0])
        weights = [_weight(b, shifts, like) for b in micro]
        total = torch.stack(weights).sum() if grad_accum_steps > 1 else weights[0]
        if world > 1:
            total = acc.reduce(total, "sum")
        weighted = []
        for i, batch in enumerate(micro):
            last = i == grad_accum_steps - 1
            gradient_state._set_sync_gradients(last)
            with contextlib.nullcontext() if last else acc.no_sync(model):
                with acc.autocast():
                    outputs = _forward(model, batch)
                loss = _loss(outputs, batch, loss_fn)
                # Token-weighted across micro-batches and processes: the gradient of the step's mean loss.
                scale = weights[i] * factor / total
                acc.backward(loss * scale.to(loss.dtype))
            weighted.append(loss.detach().to(dtype) * weights[i])
        skipped = optimizer_step()
        counts = [input_tokens(b) for b in micro]
        has_tokens = all(c is not None for c in counts)
        stats = torch.stack([torch.stack(weighted).sum(), torch.stack(counts).sum().to(dtype) if has_tokens else like])
        if world > 1:
            stats = acc.reduce(stats, "sum")
        return StepOutput(loss=stats[0] / total, skipped=skipped, num_tokens=stats[1] if has_tokens else None)

    def single(batch: Any) -> StepOutput:
        gradient_state._set_sync_gradients(True)
        with acc.autocast():
            outputs = _forward(model, batch)
        loss = _loss(outputs, batch, loss_fn)
        acc.backward(loss)
        return StepOutput(loss=loss.detach(), skipped=optimizer_step(), num_tokens=input_tokens(batch))

    def optimizer_step() -> bool:
        """Clip, step, zero the gradients; whether the gradient scaler skipped the step (a Python flag)."""
        if max_grad_norm is not None:
            acc.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        skipped = bool(getattr(optimizer, "step_was_skipped", False))
        optimizer.zero_grad()
        return skipped

    return step
