"""Snapshot and restore of everything a sweep changes: weights, optimizer, scheduler, gradient scaler and RNGs."""

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


class StateSnapshot:
    """
    A copy of the state a sweep changes, taken on creation, that [`restore`] puts back bit for bit.

    Parameters and buffers are restored in place (the optimizer keeps referring to the same tensors), gradients are
    put back as they were (usually `None`), and the optimizer, LR scheduler and gradient scaler get their state dicts
    back. The copy lives in CPU memory (pinned on CUDA, so it costs no accelerator memory) or, with `location="disk"`,
    in a temporary folder that [`close`] removes.

    Args:
        model (`torch.nn.Module`): the model being swept.
        optimizer (`torch.optim.Optimizer`, *optional*): its optimizer.
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
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.rng = rng_state()
        # Tied weights appear under several names: keep one copy per tensor.
        self._tensors: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for name, t in model.state_dict(keep_vars=True).items():
            if id(t) not in seen:
                seen.add(id(t))
                self._tensors[name] = t
        state = {
            "tensors": {name: t for name, t in self._tensors.items()},
            "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
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
            live.copy_(state["tensors"][name], non_blocking=True)
        grads = state["grads"]
        for name, p in self.model.named_parameters():
            p.grad = grads[name].to(p.device, copy=True) if name in grads else None
        # Deep copies: `load_state_dict` may alias tensors that already sit on the right device and dtype, and a
        # later step would then write into the snapshot.
        if self.optimizer is not None:
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))
        if state["scaler"] is not None:
            self.scaler.load_state_dict(copy.deepcopy(state["scaler"]))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        set_rng_state(self.rng)

    def close(self) -> None:
        """Free the copy and remove the temporary folder, if any."""
        self._state = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
