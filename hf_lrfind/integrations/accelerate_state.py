"""What accelerate's `prepare()` and `save_state` touch, and how to put it back: shared by the runner and the Trainer
adapter. The sharded-state snapshot (FSDP, DeepSpeed), the dataloader's generators, the attributes `prepare()` sets on
a model and an optimizer, and the accelerator's lists.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from ..core.state import rng_state, set_rng_state

if TYPE_CHECKING:
    from accelerate import Accelerator

# accelerate's prepare() replaces the model with sharded parameters under these: the state is saved through accelerate.
SHARDED_TYPES = ("FSDP", "DEEPSPEED", "MEGATRON_LM")
# Attributes accelerate's prepare() sets on the objects it is given (mixed-precision forward, scaler step patch, flag).
MODEL_ATTRS = ("forward", "_original_forward", "_is_accelerate_prepared")
OPTIMIZER_ATTRS = ("step", "_is_accelerate_prepared")


def uses_sharded_state(accelerator: Accelerator) -> bool:
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


class OnceSnapshot:
    """Forwards to a snapshot and remembers whether it was closed, so that a failure before the sweep still restores."""

    def __init__(self, snapshot: Any) -> None:
        self.snapshot, self.closed = snapshot, False

    def restore(self) -> None:
        self.snapshot.restore()

    def close(self) -> None:
        self.closed = True
        self.snapshot.close()


class GeneratorStates:
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
