"""The accelerate runner: a range test inside your own `accelerate` setup (DDP, FSDP, DeepSpeed, mixed precision).

The adapter that imports accelerate (on first use, so that `import hf_lrfind` stays light). It builds the engine's
`step_fn` out of `accelerator.autocast`, `accelerator.backward`, gradient accumulation, clipping and the optimizer
step, and hands it to [`hf_lrfind.core.engine.range_test`], which snapshots, sweeps, restores and suggests.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..core.config import LRFinderConfig, LRSpec
from ..core.confirm import Replay
from ..core.result import LRFinderResult
from ..core.state import StateSnapshot
from ..core.strategies import default_strategy, run_strategy
from .accelerate_state import (
    MODEL_ATTRS,
    OPTIMIZER_ATTRS,
    AccelerateStateSnapshot,
    DataOrder,
    OnceSnapshot,
    is_accelerated,
    remove_items,
    restore_attrs,
    shards_parameters,
    uses_sharded_state,
)
from .accelerate_step import check_not_empty, cycle, make_step_fn

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

_RANGE_DEFAULTS = {"start_lr": 1e-7, "end_lr": 10.0, "num_steps": 100, "mode": "exp"}


def has_accelerator() -> bool:
    """Whether torch sees a GPU (or another accelerator). Without one, `Accelerator(cpu=True)` is what makes
    `torchrun --nproc_per_node N` run as N cooperating processes; plain `Accelerator()` runs each on its own."""
    if hasattr(torch, "accelerator"):  # torch >= 2.6
        return torch.accelerator.is_available()
    return torch.cuda.is_available() or torch.backends.mps.is_available()


class LRFinder:
    """
    Learning-rate range test for a model trained with `accelerate`: the sweep runs your model and optimizer through
    `accelerator.autocast`, `accelerator.backward`, gradient accumulation, gradient clipping and `optimizer.step()`,
    as a training loop of yours does, then puts everything back.

    The model and optimizer may come from `accelerator.prepare` or not:

    - prepared: used as they are; pass the `accelerator` that prepared them.
    - not prepared: prepared for the sweep and un-prepared afterwards. The model is moved to `accelerator.device` (and
      stays there), and is wrapped (DDP, the mixed-precision `forward`) only during the sweep; the accelerator does not
      keep them in its lists. Under FSDP and DeepSpeed, preparing replaces the parameters by shards, which cannot be
      undone: prepare them yourself first.

    Either way the model's parameters, buffers and gradients, the optimizer's state and param groups, the gradient
    scaler, the RNG states, the modules' train/eval modes and what decides the dataloader's next batches (its
    generators and epoch counters, on every process) are bit-identical after [`range_test`] to what they were before.
    Only what a sweep can change is copied (see [`StateSnapshot`]): frozen parameters outside the optimizer, such as
    the base model of a LoRA fine-tune, are neither read nor written. Under FSDP1, DeepSpeed and Megatron-LM the
    snapshot goes through `accelerator.save_state` to a temporary folder instead.

    Args:
        model (`torch.nn.Module`):
            The model. Batches are passed as `model(**batch)` (dicts, as transformers collators make) or, for an
            `(inputs, targets)` pair, `model(inputs)`.
        optimizer (`torch.optim.Optimizer`):
            Its optimizer. Its param groups get the sweep's learning rates, each group keeping its ratio to group 0.
        accelerator (`accelerate.Accelerator`, *optional*):
            The accelerator to run with; when left out, a new `Accelerator()` configured by `accelerate launch` or
            the environment (with `cpu=True` on a machine without GPU, so that `torchrun` processes cooperate). Required when the model and optimizer were prepared.
        loss_fn (`Callable[[Any, Any], torch.Tensor]`, *optional*):
            `loss_fn(outputs, batch)` returning the mean loss of the batch; by default the model output's `loss`.
        max_grad_norm (`float`, *optional*):
            Clip the gradient norm to this value with `accelerator.clip_grad_norm_` before each optimizer step.
        progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar and, after the sweep, the result's summary (on the main process only).

    Example:

    ```python
    >>> from accelerate import Accelerator
    >>> from hf_lrfind import LRFinder

    >>> accelerator = Accelerator(mixed_precision="bf16")
    >>> optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    >>> result = LRFinder(model, optimizer, accelerator=accelerator).range_test(train_dataloader, end_lr=1.0)
    >>> result.suggestion()  # "trough", the default rule
    ```
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        accelerator: Accelerator | None = None,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        max_grad_norm: float | None = None,
        progress: bool = True,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}.")
        if max_grad_norm is not None and not (isinstance(max_grad_norm, (int, float)) and max_grad_norm > 0):
            raise ValueError(f"max_grad_norm ({max_grad_norm}) must be a positive number, or None to not clip.")
        if accelerator is None:
            from accelerate import Accelerator

            if is_accelerated(optimizer) or getattr(model, "_is_accelerate_prepared", False):
                raise ValueError(
                    "The model or optimizer went through accelerator.prepare; pass that accelerator: LRFinder(model, optimizer, accelerator=accelerator)."
                )
            accelerator = Accelerator(cpu=not has_accelerator())
        self.model, self.optimizer, self.accelerator = model, optimizer, accelerator
        self.loss_fn, self.max_grad_norm, self.progress = loss_fn, max_grad_norm, progress
        self.result: LRFinderResult | None = None
        self._strategy: tuple[str, dict[str, Any]] = ("joint", {})  # one sweep over the optimizer's own groups
        self._write_summary = True  # the CLI prints its own

    def _is_prepared(self) -> bool:
        acc = self.accelerator
        # accelerate lists the module it was given (a DDP wrapper's inner module), or the FSDP/DeepSpeed wrapper
        inner = acc.unwrap_model(self.model)
        model_prepared = any(m is self.model or m is inner for m in acc._models)
        optimizer_prepared = is_accelerated(self.optimizer)
        if model_prepared != optimizer_prepared:
            which = "model" if model_prepared else "optimizer"
            raise ValueError(
                f"Only the {which} went through this accelerator's prepare(); pass both as accelerator.prepare returned them, or both unprepared."
            )
        return model_prepared

    def _config(
        self, config: LRFinderConfig | None, explicit: dict[str, Any], options: dict[str, Any]
    ) -> LRFinderConfig:
        if config is not None:
            if not isinstance(config, LRFinderConfig):
                raise TypeError(f"config must be an LRFinderConfig, got {type(config).__name__}.")
            changed = [k for k, v in explicit.items() if v != _RANGE_DEFAULTS[k]] + list(options)
            if changed:
                raise TypeError(f"Pass either config= or the options {changed}, not both (use dataclasses.replace).")
            return config
        names = {f.name for f in dataclasses.fields(LRFinderConfig)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"Unknown range_test options {unknown}; the options are {sorted(names)}.")
        return LRFinderConfig(**explicit, **options)

    def _grad_accum(self, grad_accum_steps: int | None) -> int:
        acc = self.accelerator
        if grad_accum_steps is None:
            return acc.gradient_accumulation_steps
        if isinstance(grad_accum_steps, bool) or not isinstance(grad_accum_steps, int) or grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps ({grad_accum_steps!r}) must be a positive int.")
        if acc.distributed_type.value == "DEEPSPEED" and grad_accum_steps != acc.gradient_accumulation_steps:
            raise ValueError(
                f"Under DeepSpeed, grad_accum_steps ({grad_accum_steps}) must equal the accelerator's gradient_accumulation_steps ({acc.gradient_accumulation_steps}), which DeepSpeed's engine is configured with; leave grad_accum_steps out."
            )
        return grad_accum_steps

    def _warn_fp16_on_cpu(self) -> None:
        acc = self.accelerator
        if acc.mixed_precision == "fp16" and acc.device.type == "cpu" and acc.is_main_process:
            logger.warning(
                "mixed_precision='fp16' is not applied on CPU by accelerate: the sweep runs in fp32 and no gradient scaler is used. Use mixed_precision='bf16' for reduced precision on CPU, or run on a GPU."
            )

    @contextlib.contextmanager
    def _prepared(self, prepared: bool, dataloader: Iterable[Any]) -> Iterator[tuple[Any, Any, Iterable[Any]]]:
        """Model, optimizer and dataloader ready for the sweep; un-prepares what it prepared on exit."""
        acc = self.accelerator
        model, optimizer, loader = self.model, self.optimizer, dataloader
        model_attrs, optimizer_attrs = dict(model.__dict__), dict(optimizer.__dict__)
        new_loader = (
            acc.num_processes > 1
            and isinstance(dataloader, torch.utils.data.DataLoader)
            and not getattr(dataloader, "_is_accelerate_prepared", False)
        )
        try:
            if not prepared:
                model, optimizer = acc.prepare(model, optimizer)
            if new_loader:  # each process needs its own shard of the batches
                loader = acc.prepare_data_loader(dataloader)
            yield model, optimizer, loader
        finally:
            end = getattr(loader, "end", None)
            if callable(end) and hasattr(loader, "gradient_state"):
                end()  # forget the iteration the sweep left unfinished
            if new_loader:
                remove_items(acc._dataloaders, loader)
            if not prepared:
                remove_items(acc._models, model, self.model)
                remove_items(acc._optimizers, optimizer)
                restore_attrs(self.model, model_attrs, MODEL_ATTRS)
                restore_attrs(self.optimizer, optimizer_attrs, OPTIMIZER_ATTRS)

    def range_test(
        self,
        dataloader: Iterable[Any],
        *,
        start_lr: LRSpec = 1e-7,
        end_lr: LRSpec = 10.0,
        num_steps: int = 100,
        mode: Literal["exp", "linear"] = "exp",
        grad_accum_steps: int | None = None,
        config: LRFinderConfig | None = None,
        output_dir: str | os.PathLike | None = None,
        groups: str | Mapping[str, Any] | None = None,
        strategy: Literal["joint", "split", "sequential"] | None = None,
        method: str | None = None,
        layer_decay: float | None = None,
        ratios: Mapping[str, float] | None = None,
        loading_info: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> LRFinderResult:
        """
        Run the range test and restore everything.

        Args:
            dataloader (`Iterable`):
                The training batches: a `torch.utils.data.DataLoader` (prepared or not; on several processes an
                unprepared one is sharded with `accelerator.prepare_data_loader` for the sweep) or any re-iterable of
                batches. Cycled when shorter than the sweep.
            start_lr (`float` or `Sequence[float]`, *optional*, defaults to 1e-7):
                Learning rate of the first step (of param group 0; the others keep their ratio), or one per group.
            end_lr (`float` or `Sequence[float]`, *optional*, defaults to 10.0):
                Learning rate the sweep heads for.
            num_steps (`int`, *optional*, defaults to 100):
                Optimizer steps of the sweep.
            mode (`str`, *optional*, defaults to `"exp"`):
                `"exp"` or `"linear"`.
            grad_accum_steps (`int`, *optional*):
                Micro-batches per optimizer step; defaults to the accelerator's `gradient_accumulation_steps`. The
                micro-batch losses are weighted by their label tokens (by their examples for labels that are not
                token-level) in the gradient and in the recorded loss, across processes too, so `k` micro-batches of
                `b` give the curve of one batch of `k * b`.
            config ([`LRFinderConfig`], *optional*):
                All options in one object, instead of keywords.
            output_dir (`str`, *optional*):
                If given, the main process writes `lr_find.json` and `lr_find.png` there.
            groups (`str` or `Mapping`, *optional*):
                `"auto"` or explicit groups (see [`hf_lrfind.detect_groups`]): one curve and suggestion per group,
                swept with a new optimizer of your optimizer's class and defaults over those groups (yours is not
                touched). By default the optimizer's own param groups are swept together.
            strategy (`str`, *optional*):
                `"split"` (the default for `groups="auto"`: the whole model at one rate for the body and adapter
                curves, then the head alone), `"sequential"` (head, head warm-up, body) or `"joint"` (fixed ratios).
            method (`str`, *optional*, defaults to the first of `suggest`, `"trough"`):
                The rule whose head suggestion the sequential strategy trains the head at.
            layer_decay, ratios, loading_info (*optional*):
                Per-layer groups at this ratio; each group's ratio to the head in a joint sweep; the dict from
                `from_pretrained(..., output_loading_info=True)` whose missing keys are the head.
            options:
                The other fields of [`LRFinderConfig`] (`beta`, `diverge_threshold`, `check_every`, `suggest`, ...).

        Returns:
            [`LRFinderResult`]: the same on every process. `metadata["tokens_seen"]` counts the input tokens of all
            processes (attention-mask sum, or input ids) when batches are dicts with `input_ids`.

        Raises:
            ValueError: an empty dataloader, bad options, a model output without a loss (and no `loss_fn`), an
                unprepared model under FSDP/DeepSpeed. Nothing is changed when it is raised.
        """
        explicit = {"start_lr": start_lr, "end_lr": end_lr, "num_steps": num_steps, "mode": mode}
        config = self._config(config, explicit, options)
        if groups is not None:
            return self._grouped_range_test(
                dataloader,
                config,
                grad_accum_steps,
                output_dir,
                groups,
                strategy,
                method,
                layer_decay,
                ratios,
                loading_info,
            )
        grad_accum_steps = self._grad_accum(grad_accum_steps)
        check_not_empty(dataloader)
        acc = self.accelerator
        prepared = self._is_prepared()
        sharded = uses_sharded_state(acc)
        if shards_parameters(acc) and not prepared:
            raise ValueError(
                f"Under {acc.distributed_type.value}, preparing replaces the model's parameters by shards, which the sweep cannot undo: run model, optimizer = accelerator.prepare(model, optimizer) first and pass those."
            )
        self._warn_fp16_on_cpu()
        raw_optimizer = self.optimizer.optimizer if is_accelerated(self.optimizer) else self.optimizer
        order = DataOrder(dataloader)
        training = {module: module.training for module in self.model.modules()}
        sync_gradients = acc.gradient_state.sync_gradients
        # Taken before preparing: DDP's start-up broadcast of rank 0's weights is undone too.
        if sharded:
            snapshot = OnceSnapshot(AccelerateStateSnapshot(acc, config.snapshot_dir))
        else:
            snapshot = OnceSnapshot(
                StateSnapshot(
                    self.model,
                    raw_optimizer,
                    scaler=acc.scaler,
                    location=config.snapshot,
                    directory=config.snapshot_dir,
                )
            )
        metadata = {
            "runner": "accelerate",
            "distributed_type": str(acc.distributed_type.value),
            "num_processes": acc.num_processes,
            "mixed_precision": acc.mixed_precision,
            "device": str(acc.device),
            "grad_accum_steps": grad_accum_steps,
            "max_grad_norm": self.max_grad_norm,
        }
        wrapped = False
        try:
            with self._prepared(prepared, dataloader) as (model, optimizer, loader):
                wrapped = model is not self.model
                model.train()
                batches = Replay(cycle(loader))  # confirmation trials replay the same batches
                try:
                    step = make_step_fn(
                        acc, model, optimizer, batches, grad_accum_steps, self.loss_fn, self.max_grad_norm
                    )
                    result = run_strategy(
                        self._strategy[0],
                        step,
                        model,
                        raw_optimizer,
                        config,
                        **self._strategy[1],
                        scaler=acc.scaler,
                        snapshot=snapshot,
                        progress=self.progress and acc.is_main_process,
                        log_warnings=acc.is_main_process,
                        metadata=metadata,
                        replay=batches,
                    )
                finally:
                    batches.close()
        finally:
            if not snapshot.closed:
                snapshot.restore()
                snapshot.close()
            acc.gradient_state._set_sync_gradients(sync_gradients)
            for module, was_training in training.items():
                module.training = was_training
            order.restore()
        if wrapped and not prepared:
            # Free the DDP wrapper made for the sweep now, so that its gradient hooks go with it.
            del step, model, optimizer
            gc.collect()
        if acc.is_main_process and self.progress and self._write_summary:  # which rate, and can it be trusted
            from tqdm.auto import tqdm

            tqdm.write(result.summary())
        if output_dir is not None and acc.is_main_process:
            result.save(os.path.join(output_dir, "lr_find.json"))
            result.plot(os.path.join(output_dir, "lr_find.png"))
        self.result = result
        return result

    def _grouped_range_test(
        self,
        dataloader,
        config,
        grad_accum_steps,
        output_dir,
        groups,
        strategy,
        method,
        layer_decay,
        ratios,
        loading_info,
    ) -> LRFinderResult:
        """A range test on a new optimizer over named groups (the user's optimizer is left alone)."""
        from ..groups.build import regroup_optimizer

        acc = self.accelerator
        prepared = self._is_prepared()
        raw = self.optimizer.optimizer if is_accelerated(self.optimizer) else self.optimizer
        grouped, mapping = regroup_optimizer(
            acc.unwrap_model(self.model), raw, groups, ratios=ratios, layer_decay=layer_decay, loading_info=loading_info
        )
        if strategy is None:
            strategy = default_strategy(groups, layer_decay, mapping)
        finder = copy.copy(self)
        finder.optimizer = acc.prepare_optimizer(grouped) if prepared else grouped
        extra = {"method": method} if strategy == "sequential" else {}
        finder._strategy = (strategy, {"groups": mapping, **extra})
        try:
            self.result = finder.range_test(
                dataloader, config=config, grad_accum_steps=grad_accum_steps, output_dir=output_dir
            )
        finally:
            remove_items(acc._optimizers, finder.optimizer)
        return self.result
