"""Snapshot and restore of what a sweep can change: trainable weights, buffers, optimizer, scheduler, gradient scaler
and RNGs; frozen weights are neither read nor written."""

from __future__ import annotations

import copy
import logging
import os
import random
import shutil
import tempfile
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _to_cpu(obj: Any) -> Any:
    """Deep copy of `obj` with every tensor copied to CPU memory (pinned, non-blocking for CUDA tensors)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.is_cuda:
            return torch.empty_like(t, device="cpu", pin_memory=True).copy_(t, non_blocking=True)
        return t.clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and every initialised CUDA device) random generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of [`rng_state`]."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def local_shard(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's shard on this process (FSDP2, tensor parallel), a view that writes through; other tensors as is."""
    return t.to_local() if _is_dtensor(t) else t


def _is_dtensor(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and callable(getattr(t, "to_local", None)) and hasattr(t, "placements")


def torch_optimizer(optimizer: Any) -> Any:
    """The torch optimizer a wrapper holds (accelerate's `AcceleratedOptimizer.optimizer`), or `optimizer` itself."""
    inner = getattr(optimizer, "optimizer", None)
    return inner if isinstance(inner, torch.optim.Optimizer) else optimizer


def optimizer_params(optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    """The optimizer's parameters, in the order its `state_dict` numbers them."""
    return [] if optimizer is None else [p for group in optimizer.param_groups for p in group["params"]]


def changeable_tensors(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, torch.Tensor]:
    """
    The tensors a sweep can change, by name, each once (tied weights share a name): the parameters that need a
    gradient or sit in an optimizer group, the buffers, and parameters of the optimizer the model does not hold (named
    `optimizer.<index>`). Read with `named_parameters`/`named_buffers`, never `state_dict` (which runs the modules'
    state-dict hooks: bitsandbytes repacks 4-bit weights there). Frozen parameters outside the optimizer are left out.
    """
    in_optimizer = {id(p) for p in optimizer_params(optimizer)}
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if (p.requires_grad or id(p) in in_optimizer) and id(p) not in seen:
            seen.add(id(p))
            tensors[name] = p
    for name, b in model.named_buffers():
        if id(b) not in seen:
            seen.add(id(b))
            tensors[name] = b
    for i, p in enumerate(optimizer_params(optimizer)):
        if id(p) not in seen:
            seen.add(id(p))
            tensors[f"optimizer.{i}"] = p
    return tensors


def _frozen_in_optimizer(optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    return [p for p in optimizer_params(optimizer) if not p.requires_grad]


def _standard_state_dict(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` keeps its state as torch's optimizers do (its own state_dict methods are torch's)."""
    cls = type(optimizer)
    base = torch.optim.Optimizer
    return cls.state_dict is base.state_dict and cls.load_state_dict is base.load_state_dict


class StateSnapshot:
    """
    A copy of the state a sweep can change, taken on creation, that [`restore`] puts back bit for bit.

    What is copied: the parameters that need a gradient or sit in the optimizer's groups, their gradients, the
    buffers, the optimizer's state and hyperparameters, the LR scheduler, the gradient scaler and the RNG states.
    Frozen parameters outside the optimizer (a LoRA fine-tune's base model, 4-bit quantized weights) are neither read
    nor written: gradient steps cannot change them. A frozen parameter that your own code updates outside autograd
    during a forward (an EMA teacher, a codebook) is not restored: keep such state in a buffer, which is. A DTensor (FSDP2, tensor parallel) is copied as this process's shard.
    Everything is written back in place (the optimizer keeps referring to the same tensors, and an optimizer whose
    state is kept as torch's are gets its state tensors back in place too), gradients are put back as they were
    (usually `None`). The copy lives in CPU memory (pinned for CUDA tensors, so it costs no accelerator memory) or,
    with `location="disk"`, in a temporary folder that [`close`] removes.

    Args:
        model (`torch.nn.Module`): the model being swept.
        optimizer (`torch.optim.Optimizer`, *optional*): its optimizer (accelerate's `AcceleratedOptimizer` too).
        scheduler (*optional*): an LR scheduler with `state_dict`/`load_state_dict`.
        scaler (*optional*): a `torch.amp.GradScaler`.
        location (`str`, *optional*, defaults to `"cpu"`): `"cpu"` or `"disk"`.
        directory (`str`, *optional*): parent folder of the temporary folder for `location="disk"`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        scheduler: Any = None,
        scaler: Any = None,
        location: str = "cpu",
        directory: str | None = None,
    ) -> None:
        optimizer = torch_optimizer(optimizer)
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.rng = rng_state()
        self._tensors = changeable_tensors(model, optimizer)
        frozen = _frozen_in_optimizer(optimizer)
        if frozen:
            size = sum(p.numel() * p.element_size() for p in frozen) / 2**20
            logger.info(
                f"{len(frozen)} parameters ({size:.1f} MiB) need no gradient but sit in the optimizer's param groups: the snapshot copies them too. Build the optimizer over [p for p in model.parameters() if p.requires_grad] to leave them out."
            )
        self._in_place = optimizer is not None and _standard_state_dict(optimizer)
        with torch.no_grad():
            state = {
                "tensors": {name: local_shard(t.detach()) for name, t in self._tensors.items()},
                "grads": {n: local_shard(t.grad) for n, t in self._tensors.items() if t.grad is not None},
                "optimizer": self._optimizer_state() if optimizer is not None else None,
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            }
            self._dir: str | None = None
            if location == "disk":
                self._dir = tempfile.mkdtemp(prefix="hf_lrfind-", dir=directory)
                torch.save(state, os.path.join(self._dir, "snapshot.pt"))
                self._state = None
            else:
                self._state = _to_cpu(state)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # the pinned copies above are non-blocking

    def _optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state: by parameter index, each tensor as this process's shard (in place restore), or its
        own `state_dict()` for an optimizer that keeps its state another way."""
        optimizer = self.optimizer
        if not self._in_place:
            return optimizer.state_dict()
        params = optimizer_params(optimizer)
        ids = {id(p) for p in params}
        return {
            "state": {
                i: {k: local_shard(v) if isinstance(v, torch.Tensor) else v for k, v in optimizer.state[p].items()}
                for i, p in enumerate(params)
                if p in optimizer.state
            },
            # entries an optimizer keeps under other keys than its parameters (torch's state_dict keeps them too)
            "other": {k: v for k, v in optimizer.state.items() if id(k) not in ids},
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups],
        }

    def _load(self) -> dict[str, Any]:
        if self._state is not None:
            return self._state
        if self._dir is None:
            raise RuntimeError("This snapshot was closed; take a new one.")
        return torch.load(os.path.join(self._dir, "snapshot.pt"), map_location="cpu", weights_only=False)

    @torch.no_grad()
    def restore(self) -> None:
        """Put the model, optimizer, scheduler, scaler and RNG states back as they were. Can be called repeatedly."""
        state = self._load()
        for name, live in self._tensors.items():
            local_shard(live).copy_(state["tensors"][name], non_blocking=True)
        grads = state["grads"]
        for name, t in self._tensors.items():
            if name not in grads:
                t.grad = None
            elif _is_dtensor(t):  # a gradient sharded as its parameter
                t.grad = torch.empty_like(t)
                local_shard(t.grad).copy_(grads[name])
            else:
                t.grad = grads[name].to(t.device, copy=True)
        # Deep copies: `load_state_dict` may alias tensors that already sit on the right device and dtype, and a
        # later step would then write into the snapshot.
        try:
            if self.optimizer is not None:
                self._restore_optimizer(state["optimizer"])
        finally:
            if self.scheduler is not None:
                self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))
            if state["scaler"] is not None:
                self.scaler.load_state_dict(copy.deepcopy(state["scaler"]))
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            set_rng_state(self.rng)

    def _restore_optimizer(self, saved: dict[str, Any]) -> None:
        """
        Copy the saved optimizer state back into the live state tensors, in place, so that restoring costs no second
        copy of the state; what the sweep created (the state of an optimizer that had none) is dropped. Falls back to
        `load_state_dict` where the live state does not match the saved one tensor for tensor.
        """
        optimizer = self.optimizer
        if not self._in_place:
            optimizer.load_state_dict(copy.deepcopy(saved))
            return
        params = optimizer_params(optimizer)
        matches = all(
            _fits(optimizer.state.get(params[i], {}).get(k), v) for i, s in saved["state"].items() for k, v in s.items()
        )
        if not matches:
            groups = [{**g, "params": []} for g in saved["param_groups"]]
            index = 0
            for group, live in zip(groups, optimizer.param_groups):
                group["params"] = list(range(index, index + len(live["params"])))
                index += len(live["params"])
            state = {**saved["other"], **saved["state"]}
            optimizer.load_state_dict(copy.deepcopy({"state": state, "param_groups": groups}))
            return
        ids = {id(p) for p in params}
        for key in [k for k in optimizer.state if id(k) not in ids]:
            del optimizer.state[key]
        optimizer.state.update(copy.deepcopy(saved["other"]))
        for i, p in enumerate(params):
            if i not in saved["state"]:
                optimizer.state.pop(p, None)
                continue
            live = optimizer.state[p]
            for k in [k for k in live if k not in saved["state"][i]]:
                del live[k]
            for k, v in saved["state"][i].items():
                if isinstance(v, torch.Tensor):
                    local_shard(live[k]).copy_(v, non_blocking=True)
                else:
                    live[k] = copy.deepcopy(v)
        for group, hyper in zip(optimizer.param_groups, saved["param_groups"]):
            for k in [k for k in group if k != "params" and k not in hyper]:
                del group[k]
            group.update(copy.deepcopy(hyper))

    def close(self) -> None:
        """Free the copy and remove the temporary folder, if any."""
        self._state = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _fits(live: Any, saved: Any) -> bool:
    """Whether a saved optimizer state value can be copied into the live one in place."""
    if not isinstance(saved, torch.Tensor):
        return True
    if not isinstance(live, torch.Tensor):
        return False
    live = local_shard(live)
    return live.shape == saved.shape and live.dtype == saved.dtype
