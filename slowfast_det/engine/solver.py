"""Optimiser and learning-rate schedule with PySlowFast's semantics.

* Parameter groups (PySlowFast ``construct_optimizer``): parameters owned directly by a BatchNorm module get
  ``bn_weight_decay``; with ``zero_wd_1d_param`` every other 1-D parameter (biases) gets no weight decay; the
  rest get ``weight_decay``. Parameters with ``requires_grad=False`` (frozen BN) are left out.
* Schedule (PySlowFast ``lr_policy``), a pure function of a *fractional* epoch ``e = epoch + iter / iters``:

  - ``cosine``: ``end + (base - end) * (cos(pi * (e - o) / (max_epoch - o)) + 1) / 2`` with ``o`` the warm-up
    length when ``cosine_after_warmup`` else 0;
  - ``steps_with_relative_lrs``: ``lrs[i] * base`` with ``i`` the last step ``<= e`` (``steps`` start at 0);
  - ``constant``: ``base``;
  - warm-up: for ``e < warmup_epochs`` the rate goes linearly from ``warmup_start_lr`` (at ``e = 0``) to the
    policy's rate at ``e = warmup_epochs``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["LR_POLICIES", "LRSchedule", "build_optimizer", "optimizer_param_groups", "set_lr"]

LR_POLICIES = ("cosine", "steps_with_relative_lrs", "constant")


def optimizer_param_groups(
    model: nn.Module, *, weight_decay: float, bn_weight_decay: float, zero_wd_1d_param: bool
) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``model`` into weight-decay groups, empty groups dropped.

    Returns:
        ``[{"params": [...], "weight_decay": wd, "name": "bn" | "non_bn" | "zero_wd"}, ...]``.
    """
    bn: list[nn.Parameter] = []
    non_bn: list[nn.Parameter] = []
    zero: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        is_bn = isinstance(module, nn.modules.batchnorm._NormBase)
        for p in module.parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if is_bn:
                bn.append(p)
            elif zero_wd_1d_param and p.ndim == 1:
                zero.append(p)
            else:
                non_bn.append(p)
    groups = [
        {"params": bn, "weight_decay": bn_weight_decay, "name": "bn"},
        {"params": non_bn, "weight_decay": weight_decay, "name": "non_bn"},
        {"params": zero, "weight_decay": 0.0, "name": "zero_wd"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module,
    *,
    method: str = "sgd",
    base_lr: float,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    bn_weight_decay: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = True,
    zero_wd_1d_param: bool = False,
) -> torch.optim.Optimizer:
    """SGD with momentum over :func:`optimizer_param_groups` (the learning rate is set every iteration).

    Raises:
        ValueError: ``method`` is not ``"sgd"``, the model has no trainable parameter, or nesterov is asked
            with zero momentum or non-zero dampening (which torch rejects with a less clear message).
    """
    if method != "sgd":
        raise ValueError(f"SOLVER.OPTIMIZING_METHOD {method!r} is not supported; only 'sgd' (PySlowFast's AVA recipe)")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            f"SOLVER.NESTEROV needs SOLVER.MOMENTUM > 0 and SOLVER.DAMPENING == 0, got momentum={momentum}, "
            f"dampening={dampening}"
        )
    groups = optimizer_param_groups(
        model, weight_decay=weight_decay, bn_weight_decay=bn_weight_decay, zero_wd_1d_param=zero_wd_1d_param
    )
    if not groups:
        raise ValueError("the model has no trainable parameter (all requires_grad=False)")
    return torch.optim.SGD(
        groups, lr=base_lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening, nesterov=nesterov
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass(frozen=True)
class LRSchedule:
    """PySlowFast's learning-rate policy as a function of the fractional epoch (see the module docstring).

    Attributes:
        policy: one of :data:`LR_POLICIES`.
        base_lr: peak rate.
        max_epoch: training length in epochs (the cosine's period).
        warmup_epochs: linear warm-up length in (fractional) epochs; 0 disables it.
        warmup_start_lr: rate at epoch 0 when warming up.
        cosine_end_lr: rate the cosine reaches at ``max_epoch``.
        cosine_after_warmup: start the cosine at the end of the warm-up instead of at epoch 0.
        steps: epochs where ``steps_with_relative_lrs`` changes rate (the first must be 0).
        lrs: the rate multipliers of ``base_lr``, one per step.
    """

    policy: str
    base_lr: float
    max_epoch: int
    warmup_epochs: float = 0.0
    warmup_start_lr: float = 0.0
    cosine_end_lr: float = 0.0
    cosine_after_warmup: bool = False
    steps: Sequence[float] = field(default_factory=tuple)
    lrs: Sequence[float] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.policy not in LR_POLICIES:
            raise ValueError(f"SOLVER.LR_POLICY {self.policy!r} is unknown; expected one of {LR_POLICIES}")
        if self.max_epoch <= 0:
            raise ValueError(f"SOLVER.MAX_EPOCH must be positive, got {self.max_epoch}")
        if self.warmup_epochs < 0:
            raise ValueError(f"SOLVER.WARMUP_EPOCHS must be >= 0, got {self.warmup_epochs}")
        if self.policy == "cosine":
            if not self.cosine_end_lr < self.base_lr:
                raise ValueError(
                    f"SOLVER.COSINE_END_LR ({self.cosine_end_lr}) must be below SOLVER.BASE_LR ({self.base_lr})"
                )
            if self.cosine_after_warmup and self.warmup_epochs >= self.max_epoch:
                raise ValueError("SOLVER.COSINE_AFTER_WARMUP needs SOLVER.WARMUP_EPOCHS < SOLVER.MAX_EPOCH")
        if self.policy == "steps_with_relative_lrs":
            steps, lrs = list(self.steps), list(self.lrs)
            if not steps or len(steps) != len(lrs):
                raise ValueError(
                    f"SOLVER.STEPS {steps} and SOLVER.LRS {lrs} must be non-empty and of the same length"
                )
            if steps[0] != 0 or steps != sorted(steps):
                raise ValueError(f"SOLVER.STEPS must be ascending and start at 0, got {steps}")
        object.__setattr__(self, "steps", tuple(float(s) for s in self.steps))
        object.__setattr__(self, "lrs", tuple(float(x) for x in self.lrs))

    def _policy_lr(self, epoch: float) -> float:
        if self.policy == "cosine":
            offset = self.warmup_epochs if self.cosine_after_warmup else 0.0
            progress = (epoch - offset) / (self.max_epoch - offset)
            return self.cosine_end_lr + (self.base_lr - self.cosine_end_lr) * (math.cos(math.pi * progress) + 1.0) * 0.5
        if self.policy == "steps_with_relative_lrs":
            # index of the last step <= epoch (PySlowFast's get_step_index, steps[0] == 0)
            return self.lrs[bisect.bisect_right(self.steps, epoch) - 1] * self.base_lr
        return self.base_lr

    def lr_at(self, epoch: float) -> float:
        """Learning rate at fractional epoch ``epoch`` (``cur_epoch + cur_iter / iters_per_epoch``)."""
        if epoch < self.warmup_epochs:
            end = self._policy_lr(self.warmup_epochs)
            return epoch * (end - self.warmup_start_lr) / self.warmup_epochs + self.warmup_start_lr
        return self._policy_lr(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The schedule's parameters (it has no other state: the rate is a function of the epoch)."""
        state = asdict(self)
        state["steps"], state["lrs"] = list(self.steps), list(self.lrs)
        return state

    def differences(self, state: dict[str, Any]) -> list[str]:
        """Human-readable differences between this schedule and a saved :meth:`state_dict`."""
        mine = self.state_dict()
        return [f"{k}: saved {state.get(k)!r}, now {v!r}" for k, v in mine.items() if state.get(k) != v]
