"""The accelerate runner: a range test inside your own `accelerate` setup (DDP, FSDP, DeepSpeed, mixed precision).

The adapter that imports accelerate (on first use, so that `import hf_lrfind` stays light). It builds the engine's
`step_fn` out of `accelerator.autocast`, `accelerator.backward`, gradient accumulation, clipping and the optimizer
step, and hands it to [`hf_lrfind.engine.range_test`], which snapshots, sweeps, restores and suggests.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch

from .config import LRFinderConfig, LRSpec
from .engine import StepOutput
from .result import LRFinderResult
from .state import StateSnapshot, rng_state, set_rng_state
from .strategies import default_strategy, run_strategy

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# accelerate's prepare() replaces the model with sharded parameters under these: the state is saved through accelerate.
SHARDED_TYPES = ("FSDP", "DEEPSPEED", "MEGATRON_LM")
# Attributes accelerate's prepare() sets on the objects it is given (mixed-precision forward, scaler step patch, flag).
_MODEL_ATTRS = ("forward", "_original_forward", "_is_accelerate_prepared")
_OPTIMIZER_ATTRS = ("step", "_is_accelerate_prepared")
_RANGE_DEFAULTS = {"start_lr": 1e-7, "end_lr": 10.0, "num_steps": 100, "mode": "exp"}


def _uses_sharded_state(accelerator: Accelerator) -> bool:
    """Whether model and optimizer state are sharded across processes (FSDP, DeepSpeed, Megatron-LM)."""
    return accelerator.distributed_type.value in SHARDED_TYPES


class AccelerateStateSnapshot:
    """
    A snapshot taken with `accelerator.save_state` and restored with `accelerator.load_state`: the one that works for
    sharded state (FSDP, DeepSpeed ZeRO), where every process holds only its shard of the weights and optimizer.

    It covers everything the accelerator tracks (prepared models, optimizers, schedulers, dataloaders, the gradient
    scaler, registered objects) plus the RNG states, in a temporary folder that [`close`] removes. The folder is
    created by the main process and shared with the others, so on several machines `directory` must be a folder every
    process can read (a shared file system). Automatic checkpoint naming of the accelerator's `ProjectConfiguration`
    is switched off while saving and loading, so the user's checkpoints are never rotated or renumbered.

    Args:
        accelerator (`accelerate.Accelerator`): the accelerator that prepared the model and optimizer.
        directory (`str`, *optional*): parent folder of the temporary folder (defaults to the system's temp folder).
    """

    def __init__(self, accelerator: Accelerator, directory: str | None = None) -> None:
        from accelerate.utils import broadcast_object_list

        self.accelerator = accelerator
        self.rng = rng_state()
        path = [tempfile.mkdtemp(prefix="hf_lrfind-", dir=directory) if accelerator.is_main_process else None]
        if accelerator.num_processes > 1:
            broadcast_object_list(path)
        self.path: str | None = path[0]
        with self._explicit_folder():
            accelerator.save_state(self.path)
        accelerator.wait_for_everyone()

    @contextlib.contextmanager
    def _explicit_folder(self) -> Iterator[None]:
        project = self.accelerator.project_configuration
        automatic, iteration = project.automatic_checkpoint_naming, project.iteration
        project.automatic_checkpoint_naming = False
        try:
            yield
        finally:
            project.automatic_checkpoint_naming, project.iteration = automatic, iteration

    def restore(self) -> None:
        """Load the saved state back on every process (a collective call). Can be called repeatedly."""
        if self.path is None:
            raise RuntimeError("This snapshot was closed; take a new one.")
        with self._explicit_folder():
            self.accelerator.load_state(self.path)
        set_rng_state(self.rng)
        self.accelerator.wait_for_everyone()

    def close(self) -> None:
        """Remove the temporary folder (main process)."""
        if self.path is not None and self.accelerator.is_main_process:
            shutil.rmtree(self.path, ignore_errors=True)
        self.path = None


class _OnceSnapshot:
    """Forwards to a snapshot and remembers whether it was closed, so that a failure before the sweep still restores."""

    def __init__(self, snapshot: Any) -> None:
        self.snapshot, self.closed = snapshot, False

    def restore(self) -> None:
        self.snapshot.restore()

    def close(self) -> None:
        self.closed = True
        self.snapshot.close()


class _GeneratorStates:
    """The torch.Generators a dataloader draws from (sampler, loader, collator), so a sweep leaves them as they were."""

    def __init__(self, dataloader: Any) -> None:
        owners = [dataloader, getattr(dataloader, "base_dataloader", None)]
        owners += [getattr(o, "sampler", None) for o in owners[:2]]
        owners += [getattr(getattr(o, "batch_sampler", None), "sampler", None) for o in owners[:2]]
        owners += [getattr(o, "collate_fn", None) for o in owners[:2]]
        self._saved: list[tuple[Any, Any]] = []
        seen: set[int] = set()
        for owner in owners:
            if owner is None or id(owner) in seen or not hasattr(owner, "generator"):
                continue
            seen.add(id(owner))
            generator = owner.generator
            state = generator.get_state() if isinstance(generator, torch.Generator) else None
            self._saved.append((owner, (generator, state)))

    def restore(self) -> None:
        for owner, (generator, state) in self._saved:
            with contextlib.suppress(AttributeError):  # read-only properties
                owner.generator = generator
            if state is not None:
                generator.set_state(state)


def _cycle(dataloader: Iterable[Any]) -> Iterator[Any]:
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


def _check_not_empty(dataloader: Any) -> None:
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


def _tokens(batch: Any) -> torch.Tensor | None:
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


def _restore_attrs(obj: Any, before: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if name in before:
            obj.__dict__[name] = before[name]
        else:
            obj.__dict__.pop(name, None)


def has_accelerator() -> bool:
    """Whether torch sees a GPU (or another accelerator). Without one, `Accelerator(cpu=True)` is what makes
    `torchrun --nproc_per_node N` run as N cooperating processes; plain `Accelerator()` runs each on its own."""
    if hasattr(torch, "accelerator"):  # torch >= 2.6
        return torch.accelerator.is_available()
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def _is_accelerated(optimizer: Any) -> bool:
    from accelerate.optimizer import AcceleratedOptimizer

    return isinstance(optimizer, AcceleratedOptimizer)


def _remove(items: list[Any], *objs: Any) -> None:
    items[:] = [item for item in items if not any(item is obj for obj in objs)]


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
    scaler, the RNG states, the modules' train/eval modes and the dataloader's generators are bit-identical after
    [`range_test`] to what they were before.

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
            Show a progress bar (on the main process only).

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

            if _is_accelerated(optimizer) or getattr(model, "_is_accelerate_prepared", False):
                raise ValueError(
                    "The model or optimizer went through accelerator.prepare; pass that accelerator: LRFinder(model, optimizer, accelerator=accelerator)."
                )
            accelerator = Accelerator(cpu=not has_accelerator())
        self.model, self.optimizer, self.accelerator = model, optimizer, accelerator
        self.loss_fn, self.max_grad_norm, self.progress = loss_fn, max_grad_norm, progress
        self.result: LRFinderResult | None = None
        self._strategy: tuple[str, dict[str, Any]] = ("joint", {})  # one sweep over the optimizer's own groups

    def _is_prepared(self) -> bool:
        acc = self.accelerator
        # accelerate lists the module it was given (a DDP wrapper's inner module), or the FSDP/DeepSpeed wrapper
        inner = acc.unwrap_model(self.model)
        model_prepared = any(m is self.model or m is inner for m in acc._models)
        optimizer_prepared = _is_accelerated(self.optimizer)
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
                _remove(acc._dataloaders, loader)
            if not prepared:
                _remove(acc._models, model, self.model)
                _remove(acc._optimizers, optimizer)
                _restore_attrs(self.model, model_attrs, _MODEL_ATTRS)
                _restore_attrs(self.optimizer, optimizer_attrs, _OPTIMIZER_ATTRS)

    def _step_fn(
        self, model: torch.nn.Module, optimizer: Any, batches: Iterator[Any], grad_accum_steps: int
    ) -> Callable[[], StepOutput]:
        from accelerate.utils import send_to_device

        acc = self.accelerator
        world = acc.num_processes
        # accelerate's backward divides by the accelerator's own gradient_accumulation_steps; undo that.
        factor = world * acc.gradient_accumulation_steps
        shifts = _shifts_labels(_unwrapped(acc, model))
        # float64 makes (loss * w) / w give back loss exactly; MPS has no float64.
        dtype = torch.float32 if acc.device.type == "mps" else torch.float64
        like = torch.zeros((), dtype=dtype, device=acc.device)
        gradient_state = acc.gradient_state
        loss_fn, max_grad_norm = self.loss_fn, self.max_grad_norm
        simple = grad_accum_steps == 1 and factor == 1

        def step() -> StepOutput:
            micro = [
                send_to_device(next(batches), acc.device, non_blocking=acc.non_blocking)
                for _ in range(grad_accum_steps)
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
            counts = [_tokens(b) for b in micro]
            has_tokens = all(c is not None for c in counts)
            stats = torch.stack(
                [torch.stack(weighted).sum(), torch.stack(counts).sum().to(dtype) if has_tokens else like]
            )
            if world > 1:
                stats = acc.reduce(stats, "sum")
            return StepOutput(loss=stats[0] / total, skipped=skipped, num_tokens=stats[1] if has_tokens else None)

        def single(batch: Any) -> StepOutput:
            gradient_state._set_sync_gradients(True)
            with acc.autocast():
                outputs = _forward(model, batch)
            loss = _loss(outputs, batch, loss_fn)
            acc.backward(loss)
            return StepOutput(loss=loss.detach(), skipped=optimizer_step(), num_tokens=_tokens(batch))

        def optimizer_step() -> bool:
            """Clip, step, zero the gradients; whether the gradient scaler skipped the step (a Python flag)."""
            if max_grad_norm is not None:
                acc.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            skipped = bool(getattr(optimizer, "step_was_skipped", False))
            optimizer.zero_grad()
            return skipped

        return step

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
        strategy: Literal["joint", "sequential"] | None = None,
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
                `"sequential"` (the default for `groups="auto"`: head first, then body) or `"joint"` (fixed ratios).
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
        _check_not_empty(dataloader)
        acc = self.accelerator
        prepared = self._is_prepared()
        sharded = _uses_sharded_state(acc)
        if sharded and not prepared:
            raise ValueError(
                f"Under {acc.distributed_type.value}, preparing replaces the model's parameters by shards, which the sweep cannot undo: run model, optimizer = accelerator.prepare(model, optimizer) first and pass those."
            )
        self._warn_fp16_on_cpu()
        raw_optimizer = self.optimizer.optimizer if _is_accelerated(self.optimizer) else self.optimizer
        generators = _GeneratorStates(dataloader)
        training = {module: module.training for module in self.model.modules()}
        sync_gradients = acc.gradient_state.sync_gradients
        # Taken before preparing: DDP's start-up broadcast of rank 0's weights is undone too.
        if sharded:
            snapshot = _OnceSnapshot(AccelerateStateSnapshot(acc, config.snapshot_dir))
        else:
            snapshot = _OnceSnapshot(
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
                batches = _cycle(loader)
                try:
                    step = self._step_fn(model, optimizer, batches, grad_accum_steps)
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
            generators.restore()
        if wrapped and not prepared:
            # Free the DDP wrapper made for the sweep now, so that its gradient hooks go with it.
            del step, model, optimizer
            gc.collect()
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
        from .groups import regroup_optimizer

        acc = self.accelerator
        prepared = self._is_prepared()
        raw = self.optimizer.optimizer if _is_accelerated(self.optimizer) else self.optimizer
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
            _remove(acc._optimizers, finder.optimizer)
        return self.result


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
