"""What accelerate's `prepare()` and `save_state` touch, and how to put it back: shared by the runner and the Trainer
adapter. The sharded-state snapshot (FSDP1, DeepSpeed), what decides the dataloader's order, the attributes `prepare()` sets on
a model and an optimizer, and the accelerator's lists.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.state import rng_state, set_rng_state

if TYPE_CHECKING:
    from accelerate import Accelerator

# accelerate's prepare() replaces the model with sharded parameters under these: the state is saved through accelerate.
SHARDED_TYPES = ("FSDP", "DEEPSPEED", "MEGATRON_LM")
# Attributes accelerate's prepare() sets on the objects it is given (mixed-precision forward, scaler step patch, flag).
MODEL_ATTRS = ("forward", "_original_forward", "_is_accelerate_prepared")
OPTIMIZER_ATTRS = ("step", "_is_accelerate_prepared")


def shards_parameters(accelerator: Accelerator) -> bool:
    """Whether preparing replaces the model's parameters by shards (FSDP, DeepSpeed, Megatron-LM)."""
    return accelerator.distributed_type.value in SHARDED_TYPES


def uses_sharded_state(accelerator: Accelerator) -> bool:
    """
    Whether the snapshot goes through `accelerator.save_state` (FSDP1, DeepSpeed, Megatron-LM: state kept in their
    own sharded containers). Under FSDP2 the parameters and optimizer state are DTensors, which [`StateSnapshot`]
    copies as each process's own shard, of what a sweep can change only.
    """
    return shards_parameters(accelerator) and not getattr(accelerator.state, "is_fsdp2", False)


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


class OnceSnapshot:
    """Forwards to a snapshot and remembers whether it was closed, so that a failure before the sweep still restores."""

    def __init__(self, snapshot: Any) -> None:
        self.snapshot, self.closed = snapshot, False

    def restore(self) -> None:
        self.snapshot.restore()

    def close(self) -> None:
        self.closed = True
        self.snapshot.close()


# From a dataloader (plain or accelerate-prepared) to everything its order is drawn from: accelerate's
# DataLoaderShard/DataLoaderDispatcher -> base_dataloader -> batch_sampler (BatchSamplerShard) -> batch_sampler ->
# sampler (RandomSampler, SeedableRandomSampler), the collator (and the one the Trainer's RemoveColumnsCollator
# wraps), and the dataset (IterableDatasetShard -> dataset).
_LINKS = ("base_dataloader", "batch_sampler", "sampler", "collate_fn", "data_collator", "dataset")
# Generators: the samplers' and collators' own, accelerate's synchronized one (broadcast from rank 0 at each epoch).
_GENERATORS = ("generator", "synchronized_generator")
# Counters that decide the next pass: accelerate's `iteration` (its epoch, which `set_epoch` gives the sampler),
# SeedableRandomSampler's and IterableDatasetShard's `epoch`, the end-of-pass flags, and accelerate's saved position
# of a stateful dataloader. (datasets' IterableDataset keeps its epoch in a shared tensor, which `set_epoch` sets
# from accelerate's `iteration` at each pass.)
_COUNTERS = ("iteration", "epoch", "end_of_dataloader", "remainder", "dl_state_dict")


class DataOrder:
    """
    What decides the order of a dataloader's next batches, so that a sweep that drew from it leaves it as it was, on
    every process: each torch or NumPy generator reachable from it (a sampler nested under accelerate's
    `BatchSamplerShard`, accelerate's synchronized generator, a collator's), and the epoch counters of accelerate's
    prepared dataloaders, its seedable sampler and iterable-dataset shards. Attributes are read from the objects'
    own `__dict__`, not through accelerate's delegation to the wrapped dataloader.
    """

    def __init__(self, dataloader: Any) -> None:
        self._attrs: list[tuple[Any, str, Any]] = []
        self._states: dict[int, tuple[Any, Any]] = {}
        self._walk(dataloader, set())

    def _walk(self, obj: Any, seen: set[int]) -> None:
        attrs = getattr(obj, "__dict__", None)
        if obj is None or id(obj) in seen or not isinstance(attrs, dict):
            return
        seen.add(id(obj))
        for name in _GENERATORS + _COUNTERS:
            if name not in attrs:
                continue
            value = attrs[name]
            if isinstance(value, (torch.Generator, np.random.Generator)):
                self._states.setdefault(id(value), (value, _generator_state(value)))
            elif not (value is None or isinstance(value, (int, bool, dict))):
                continue
            self._attrs.append((obj, name, copy.deepcopy(value) if isinstance(value, dict) else value))
        for name in _LINKS:
            self._walk(attrs.get(name), seen)

    def restore(self) -> None:
        for obj, name, value in self._attrs:
            obj.__dict__[name] = copy.deepcopy(value) if isinstance(value, dict) else value
        for generator, state in self._states.values():
            _set_generator_state(generator, state)


def _generator_state(generator: torch.Generator | np.random.Generator) -> Any:
    if isinstance(generator, torch.Generator):
        return generator.get_state()
    return copy.deepcopy(generator.bit_generator.state)


def _set_generator_state(generator: torch.Generator | np.random.Generator, state: Any) -> None:
    if isinstance(generator, torch.Generator):
        generator.set_state(state)
    else:
        generator.bit_generator.state = state


def restore_attrs(obj: Any, before: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if name in before:
            obj.__dict__[name] = before[name]
        else:
            obj.__dict__.pop(name, None)


def is_accelerated(optimizer: Any) -> bool:
    from accelerate.optimizer import AcceleratedOptimizer

    return isinstance(optimizer, AcceleratedOptimizer)


def remove_items(items: list[Any], *objs: Any) -> None:
    items[:] = [item for item in items if not any(item is obj for obj in objs)]
