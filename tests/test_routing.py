"""Routers and routing losses against hand-computed values (paper Eq. 2-9)."""

import math

import pytest
import torch

from mowe.routing import (DependentRouter, IndependentRouter, diversity_loss, entropy,
                          keep_top1, mowe_loss, smooth)


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def neg_plogp(p):
    return -p * math.log(p) if p > 0 else 0.0


def test_keep_top1_keeps_only_the_largest_probability():
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    assert torch.equal(keep_top1(probs), torch.tensor([[0.0, 0.5, 0.0], [0.6, 0.0, 0.0]]))


def test_smoothing_matches_paper_formula():
    weights = torch.tensor([[0.0, 0.7, 0.0, 0.0]])
    eps = 0.1 / 4
    expected = torch.tensor([[0.1 * eps, 0.9 * 0.7 + 0.1 * eps, 0.1 * eps, 0.1 * eps]])
    assert torch.allclose(smooth(weights), expected)


def test_independent_router_weights_and_entropy_by_hand():
    prior = [0.5, -1.0, 2.0]
    router = IndependentRouter(3, prior=prior)
    decision = router(torch.zeros(2, 7, 4), torch.tensor([7, 7]))
    p = softmax(prior)
    assert decision.selected.tolist() == [2, 2]
    assert torch.allclose(decision.weights, torch.tensor([[0.0, 0.0, p[2]]] * 2), atol=1e-6)
    assert decision.loss.item() == pytest.approx(neg_plogp(p[2]), rel=1e-5)


def test_independent_router_prior_size_is_checked():
    with pytest.raises(ValueError, match="prior has 2 values"):
        IndependentRouter(3, prior=[1.0, -1.0])


def test_dependent_router_losses_by_hand():
    router = DependentRouter(base_dim=2, num_encoders=3, smoothing=0.0)
    with torch.no_grad():
        router.w_dep.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    # Sample 0: frames (1, 0) and (3, 0) -> mean (2, 0); the third frame is padding.
    # Sample 1: one frame (0, 1).
    z_base = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [9.0, 9.0]],
                           [[0.0, 1.0], [5.0, 5.0], [5.0, 5.0]]])
    decision = router(z_base, torch.tensor([2, 1]))
    p0 = softmax([2.0, 0.0, -2.0])
    p1 = softmax([0.0, 1.0, -1.0])
    r0 = [p0[0], 0.0, 0.0]
    r1 = [0.0, p1[1], 0.0]
    assert decision.selected.tolist() == [0, 1]
    assert torch.allclose(decision.weights, torch.tensor([r0, r1]), atol=1e-6)
    ent = (neg_plogp(p0[0]) + neg_plogp(p1[1])) / 2
    mean = [(a + b) / 2 for a, b in zip(r0, r1)]
    div = -sum(neg_plogp(m) for m in mean)
    assert decision.loss_parts["dep_ent"].item() == pytest.approx(ent, rel=1e-5)
    assert decision.loss_parts["dep_div"].item() == pytest.approx(div, rel=1e-5)
    assert decision.loss.item() == pytest.approx(ent + div, rel=1e-5)


def test_mowe_loss_is_half_the_sum_of_eq7_eq8_eq9():
    indep = IndependentRouter(2, prior=[0.0, 1.0])
    dep = DependentRouter(base_dim=1, num_encoders=2, smoothing=0.0)
    with torch.no_grad():
        dep.w_dep.weight.copy_(torch.tensor([[2.0], [-2.0]]))
    z_base = torch.tensor([[[1.0]], [[-1.0]]])
    lens = torch.tensor([1, 1])
    decisions = [indep(z_base, lens), dep(z_base, lens)]
    loss, parts = mowe_loss(decisions)
    p_indep = softmax([0.0, 1.0])[1]
    p_dep = softmax([2.0, -2.0])[0]  # both samples are equally confident
    indep_ent = neg_plogp(p_indep)
    dep_ent = neg_plogp(p_dep)
    div = -2 * neg_plogp(p_dep / 2)
    assert loss.item() == pytest.approx(0.5 * (indep_ent + dep_ent + div), rel=1e-5)
    assert set(parts) == {"indep_ent", "dep_ent", "dep_div"}


def test_smoothing_only_in_training_mode():
    router = DependentRouter(base_dim=2, num_encoders=4, smoothing=0.1)
    z_base = torch.randn(3, 5, 2)
    lens = torch.tensor([5, 5, 5])
    router.train()
    train_weights = router(z_base, lens).weights
    router.eval()
    eval_weights = router(z_base, lens).weights
    assert (train_weights > 0).all(), "smoothing makes every weight non-zero"
    assert ((eval_weights > 0).sum(dim=1) == 1).all(), "evaluation keeps top-1 only"
    assert torch.allclose(train_weights, 0.9 * eval_weights + 0.1 * 0.1 / 4)


def test_router_parameters_receive_gradient():
    indep = IndependentRouter(3)
    dep = DependentRouter(base_dim=4, num_encoders=3)
    z_base = torch.randn(4, 6, 4)
    lens = torch.full((4,), 6)
    decisions = [indep(z_base, lens), dep(z_base, lens)]
    loss, _ = mowe_loss(decisions)
    # Also a "task" term that flows through the kept weights, as in Eq. 3/5.
    (loss + sum(d.weights.max(dim=1).values.sum() for d in decisions)).backward()
    for parameter in (indep.w_indep, dep.w_dep.weight):
        assert parameter.grad is not None
        assert torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0


def test_entropy_and_diversity_helpers():
    weights = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    assert entropy(weights).tolist() == pytest.approx([math.log(2), 0.0])
    assert diversity_loss(weights).item() == pytest.approx(
        0.75 * math.log(0.75) + 0.25 * math.log(0.25))
