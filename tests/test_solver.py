"""Optimiser groups, SGD updates and PySlowFast's learning-rate policy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from slowfast_det import builders
from slowfast_det.config import load_config
from slowfast_det.engine.solver import LRSchedule, build_optimizer, optimizer_param_groups, set_lr

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_lr(
    policy: str,
    e: float,
    *,
    base: float,
    max_epoch: int,
    warmup: float,
    warmup_start: float,
    end: float = 0.0,
    after_warmup: bool = False,
    steps=(),
    lrs=(),
) -> float:
    """PySlowFast's lr_policy written out naively (the step index by a linear scan, as PySlowFast does)."""

    def policy_lr(x: float) -> float:
        if policy == "cosine":
            off = warmup if after_warmup else 0.0
            return end + (base - end) * (math.cos(math.pi * (x - off) / (max_epoch - off)) + 1.0) * 0.5
        if policy == "steps_with_relative_lrs":
            all_steps = list(steps) + [max_epoch]
            ind = len(all_steps) - 1
            for i, s in enumerate(all_steps):
                if x < s:
                    ind = i
                    break
            return lrs[ind - 1] * base
        return base

    if e < warmup:
        return e * (policy_lr(warmup) - warmup_start) / warmup + warmup_start
    return policy_lr(e)


def test_ava_steps_schedule_known_values() -> None:
    # configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml: warm-up 5 epochs from 0.000125, steps [0,10,15,20] x 0.1
    s = LRSchedule(
        policy="steps_with_relative_lrs",
        base_lr=0.1,
        max_epoch=20,
        warmup_epochs=5.0,
        warmup_start_lr=0.000125,
        steps=[0, 10, 15, 20],
        lrs=[1, 0.1, 0.01, 0.001],
    )
    assert s.lr_at(0.0) == pytest.approx(0.000125)
    assert s.lr_at(2.5) == pytest.approx(0.000125 + (0.1 - 0.000125) / 2)
    assert s.lr_at(5.0) == pytest.approx(0.1)
    assert s.lr_at(9.999) == pytest.approx(0.1)
    assert s.lr_at(10.0) == pytest.approx(0.01)
    assert s.lr_at(15.0) == pytest.approx(0.001)
    assert s.lr_at(19.9) == pytest.approx(0.001)
    assert s.lr_at(20.0) == pytest.approx(0.0001)  # at/after MAX_EPOCH PySlowFast keeps the last step's rate


def test_cosine_known_values() -> None:
    s = LRSchedule(policy="cosine", base_lr=0.4, max_epoch=10, cosine_end_lr=0.0)
    assert s.lr_at(0) == pytest.approx(0.4)
    assert s.lr_at(5) == pytest.approx(0.2)
    assert s.lr_at(10) == pytest.approx(0.0, abs=1e-12)
    w = LRSchedule(
        policy="cosine",
        base_lr=0.4,
        max_epoch=10,
        warmup_epochs=2,
        warmup_start_lr=0.04,
        cosine_end_lr=0.004,
        cosine_after_warmup=True,
    )
    assert w.lr_at(0) == pytest.approx(0.04)
    assert w.lr_at(1) == pytest.approx(0.22)  # halfway between 0.04 and the cosine's start 0.4
    assert w.lr_at(2) == pytest.approx(0.4)
    assert w.lr_at(6) == pytest.approx(0.004 + 0.396 / 2)
    assert w.lr_at(10) == pytest.approx(0.004)


_COSINE = dict(policy="cosine", base=0.1, max_epoch=7, warmup=1.5, warmup_start=0.001, end=1e-4)
_STEPS = dict(policy="steps_with_relative_lrs", base=0.2, max_epoch=9, steps=(0, 3, 6), lrs=(1, 0.5, 0.25))


@pytest.mark.parametrize(
    "kwargs",
    [
        _COSINE,
        {**_COSINE, "after_warmup": True},
        {**_STEPS, "warmup": 0.0, "warmup_start": 0.0},
        {**_STEPS, "warmup": 4.0, "warmup_start": 0.01},  # warm-up ends inside the second step
        dict(policy="constant", base=0.05, max_epoch=3, warmup=1.0, warmup_start=0.0),
    ],
)
def test_schedule_matches_reference_on_fractional_epochs(kwargs: dict) -> None:
    s = LRSchedule(
        policy=kwargs["policy"],
        base_lr=kwargs["base"],
        max_epoch=kwargs["max_epoch"],
        warmup_epochs=kwargs["warmup"],
        warmup_start_lr=kwargs["warmup_start"],
        cosine_end_lr=kwargs.get("end", 0.0),
        cosine_after_warmup=kwargs.get("after_warmup", False),
        steps=kwargs.get("steps", ()),
        lrs=kwargs.get("lrs", ()),
    )
    iters = 7  # per-iteration fractional epochs, as the trainer queries them
    for epoch in range(kwargs["max_epoch"]):
        for it in range(iters):
            e = epoch + it / iters
            assert s.lr_at(e) == pytest.approx(
                reference_lr(kwargs["policy"], e, **{k: v for k, v in kwargs.items() if k != "policy"}),
                rel=1e-12,
                abs=1e-15,
            )


def test_schedule_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="LR_POLICY"):
        LRSchedule(policy="poly", base_lr=0.1, max_epoch=5)
    with pytest.raises(ValueError, match="start at 0"):
        LRSchedule(policy="steps_with_relative_lrs", base_lr=0.1, max_epoch=5, steps=[1, 3], lrs=[1, 0.1])
    with pytest.raises(ValueError, match="same length"):
        LRSchedule(policy="steps_with_relative_lrs", base_lr=0.1, max_epoch=5, steps=[0, 3], lrs=[1])
    with pytest.raises(ValueError, match="COSINE_END_LR"):
        LRSchedule(policy="cosine", base_lr=0.1, max_epoch=5, cosine_end_lr=0.1)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 3, 1, bias=False)
        self.bn = nn.BatchNorm3d(3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3, 4)))


def _names(model: nn.Module, groups: list[dict]) -> dict[str, set[str]]:
    ids = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: {ids[id(p)] for p in g["params"]} for g in groups}


def test_param_groups_follow_pyslowfast() -> None:
    m = Tiny()
    groups = optimizer_param_groups(m, weight_decay=1e-4, bn_weight_decay=0.0, zero_wd_1d_param=False)
    assert _names(m, groups) == {
        "bn": {"bn.weight", "bn.bias"},
        "non_bn": {"conv.weight", "fc.weight", "fc.bias"},
    }
    groups = optimizer_param_groups(m, weight_decay=1e-4, bn_weight_decay=0.5, zero_wd_1d_param=True)
    assert _names(m, groups) == {
        "bn": {"bn.weight", "bn.bias"},
        "non_bn": {"conv.weight", "fc.weight"},
        "zero_wd": {"fc.bias"},
    }
    assert {g["name"]: g["weight_decay"] for g in groups} == {"bn": 0.5, "non_bn": 1e-4, "zero_wd": 0.0}
    for p in m.bn.parameters():  # frozen BN: not optimised at all
        p.requires_grad_(False)
    groups = optimizer_param_groups(m, weight_decay=1e-4, bn_weight_decay=0.5, zero_wd_1d_param=False)
    assert _names(m, groups) == {"non_bn": {"conv.weight", "fc.weight", "fc.bias"}}


def test_sgd_steps_match_hand_written_nesterov_with_group_weight_decay() -> None:
    torch.manual_seed(0)
    m = Tiny()
    x = torch.randn(4, 2, 1, 2, 2)
    wd, bn_wd, mom, lrs = 1e-2, 3e-2, 0.9, [0.1, 0.05, 0.02]
    opt = build_optimizer(m, base_lr=lrs[0], momentum=mom, weight_decay=wd, bn_weight_decay=bn_wd, nesterov=True)
    ref = {n: p.detach().clone() for n, p in m.named_parameters()}
    buf: dict[str, torch.Tensor] = {}
    for step, lr in enumerate(lrs):
        set_lr(opt, lr)
        opt.zero_grad()
        m(x).square().sum().backward()
        grads = {n: torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for n, p in m.named_parameters()}
        opt.step()
        for n in ref:  # SGD with momentum, nesterov: d = g + mom * buf, buf = mom * buf + g (buf = g at start)
            g = grads[n] + (bn_wd if n.startswith("bn.") else wd) * ref[n]
            buf[n] = g.clone() if step == 0 else mom * buf[n] + g
            ref[n] = ref[n] - lr * (g + mom * buf[n])
        for n, p in m.named_parameters():
            torch.testing.assert_close(p.detach(), ref[n], rtol=1e-6, atol=1e-7)
        # the next step's gradients are evaluated at the new weights (the hand copy equals them)
        with torch.no_grad():
            for n, p in m.named_parameters():
                p.copy_(ref[n])


def test_optimizer_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="OPTIMIZING_METHOD"):
        build_optimizer(Tiny(), method="adam", base_lr=0.1)
    with pytest.raises(ValueError, match="NESTEROV"):
        build_optimizer(Tiny(), base_lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_builders_from_pyslowfast_ava_config(pyslowfast_configs) -> None:
    cfg = load_config(
        pyslowfast_configs / "configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml",
        ["SOLVER.BASE_LR_SCALE_NUM_SHARDS", "True"],
    )
    s = LRSchedule(**builders.lr_schedule_kwargs(cfg, num_nodes=2))
    assert s.policy == "steps_with_relative_lrs" and s.base_lr == pytest.approx(0.2)
    assert s.lr_at(0) == pytest.approx(0.00025) and s.lr_at(12) == pytest.approx(0.02)
    kw = builders.optimizer_kwargs(cfg)
    assert kw["base_lr"] == pytest.approx(0.1) and kw["weight_decay"] == pytest.approx(1e-7)
    assert kw["nesterov"] is True and kw["momentum"] == 0.9
    opt = build_optimizer(Tiny(), **kw)
    assert isinstance(opt, torch.optim.SGD)
