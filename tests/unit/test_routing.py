"""Routers and routing losses against hand-computed values (paper Eq. 2-9)."""

import math

import pytest
import torch

from mowe.models.routers import (DependentRouter, IndependentRouter, diversity_loss, entropy,
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
    assert set(parts) == {"indep_ent", "dep_ent", "dep_div", "indep_p", "dep_p"}
    # the selected encoder's probability, logged: the scale its features enter with
    assert parts["indep_p"].item() == pytest.approx(p_indep, rel=1e-5)
    assert parts["dep_p"].item() == pytest.approx(p_dep, rel=1e-5)


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


# ------------------------------------------------ options made explicit (issue 11, 7-9)
def top_probability_after_a_step(router, loss_of):
    """Mean probability of each sample's selected encoder, before and after one SGD step
    on the loss (the same encoders: the ones selected before the step)."""
    optimizer = torch.optim.SGD(router.parameters(), lr=0.5)
    decision = loss_of(router)
    chosen = decision.selected.unsqueeze(-1)
    before = decision.probs.gather(-1, chosen).mean().item()
    decision.loss.backward()
    optimizer.step()
    return before, loss_of(router).probs.gather(-1, chosen).mean().item()


@pytest.mark.parametrize("entropy_on, more_confident", [("weights", False), ("probs", True)])
def test_routing_entropy_on_weights_or_probs(entropy_on, more_confident):
    """Top probability 0.31 < 1/e at M = 4: Eq. 7 on the KeepTop1 weights (literal)
    lowers it, the entropy of the softmax raises it."""
    indep = IndependentRouter(4, prior=[0.3, 0.0, 0.0, 0.0], entropy_on=entropy_on)
    before, after = top_probability_after_a_step(
        indep, lambda r: r(torch.zeros(2, 3, 4), torch.tensor([3, 3])))
    assert before == pytest.approx(math.exp(0.3) / (math.exp(0.3) + 3), rel=1e-5)
    assert (after > before) == more_confident
    torch.manual_seed(0)
    dep = DependentRouter(8, 4, smoothing=0.0, entropy_on=entropy_on)
    with torch.no_grad():
        dep.w_dep.weight.mul_(0.05)  # near-uniform routing: top probability < 0.40
    z_base = torch.randn(16, 5, 8)

    def entropy_only(router):  # Eq. 8 alone (the router's loss adds Eq. 9)
        decision = router(z_base, torch.full((16,), 5))
        decision.loss = router._entropy(decision.probs, decision.weights).mean()
        assert decision.loss.item() == pytest.approx(decision.loss_parts["dep_ent"].item())
        return decision

    before, after = top_probability_after_a_step(dep, entropy_only)
    assert before < 0.40 and (after > before) == more_confident
    probs = entropy_only(dep)
    expected = entropy(probs.probs if entropy_on == "probs" else probs.weights).mean()
    assert probs.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_unknown_routing_options_are_refused():
    with pytest.raises(ValueError, match="entropy_on"):
        IndependentRouter(2, entropy_on="logits")
    with pytest.raises(ValueError, match="diversity_batch"):
        DependentRouter(4, 2, diversity_batch="step")
    with pytest.raises(ValueError, match="reduction"):
        mowe_loss([], reduction="sum")


def test_mowe_loss_reduction_for_one_and_two_routers():
    one = [IndependentRouter(3, prior=[1.0, 0.0, 0.0])(torch.zeros(1, 2, 4),
                                                       torch.tensor([2]))]
    two = one + [DependentRouter(4, 3)(torch.randn(2, 2, 4), torch.tensor([2, 2]))]
    assert mowe_loss(one)[0].item() == pytest.approx(0.5 * one[0].loss.item())  # paper
    assert mowe_loss(one, "mean")[0].item() == pytest.approx(one[0].loss.item())
    assert mowe_loss(two, "mean")[0].item() == pytest.approx(mowe_loss(two)[0].item())


def _ddp_diversity(rank, world, init_file, z_base, weight, out_dir):
    """One of two gloo processes: the dep router on its half of the 8 clips."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        for batch in ("global", "local"):
            router = DependentRouter(z_base.shape[-1], weight.shape[0],
                                     diversity_batch=batch)
            with torch.no_grad():
                router.w_dep.weight.copy_(weight)
            mine = z_base[rank::world] if rank == 0 else z_base[rank::world][:3]
            div = router(mine, torch.full((mine.shape[0],), mine.shape[1])).loss_parts
            loss = diversity_loss(router(mine, torch.full((mine.shape[0],), 5)).weights,
                                  gather=batch == "global")
            loss.backward()
            grad = router.w_dep.weight.grad.clone()
            dist.all_reduce(grad)
            grad /= world  # what DDP does to parameter gradients
            torch.save({"div": div["dep_div"], "loss": loss.detach(), "grad": grad},
                       f"{out_dir}/{batch}_{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_diversity_equals_one_process_on_the_same_clips(tmp_path):
    """Eq. 9 under DDP: rbar over both processes' clips (4 + 3 here: uneven batches)
    gives the one-process value on the 7 clips, and DDP's averaged gradient equals the
    one-process gradient; with diversity_batch=local each process has its own."""
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    z_base, weight = torch.randn(8, 5, 6), torch.randn(4, 6)
    mp.spawn(_ddp_diversity, args=(2, str(tmp_path / "init"), z_base, weight,
                                   str(tmp_path)), nprocs=2, join=True)
    clips = torch.cat([z_base[0::2], z_base[1::2][:3]])
    router = DependentRouter(6, 4)
    with torch.no_grad():
        router.w_dep.weight.copy_(weight)
    single = diversity_loss(router(clips, torch.full((7,), 5)).weights)
    single.backward()
    for rank in (0, 1):
        out = torch.load(tmp_path / f"global_{rank}.pt", weights_only=True)
        assert out["div"].item() == pytest.approx(single.item(), rel=1e-5)
        assert out["loss"].item() == pytest.approx(single.item(), rel=1e-5)
        torch.testing.assert_close(out["grad"], router.w_dep.weight.grad, rtol=1e-4,
                                   atol=1e-6)
    # local: each process's own clips only
    for rank, own in ((0, z_base[0::2]), (1, z_base[1::2][:3])):
        value = torch.load(tmp_path / f"local_{rank}.pt", weights_only=True)["div"].item()
        expected = diversity_loss(router(own, torch.full((own.shape[0],), 5)).weights)
        assert value == pytest.approx(expected.item(), rel=1e-5)


def test_selected_weight_one_mixes_at_one_and_still_trains_the_router():
    """Straight-through: the forward value of the selected weight is 1 (eval, no
    smoothing), the routing loss is the paper's, and the next-token gradient still
    reaches the router through p."""
    from mowe.models.encoders import SmallEncoder
    from mowe.models.mixture import MixtureOfWeakEncoders

    torch.manual_seed(0)
    pool = [SmallEncoder(d_model=8, num_layers=1, num_heads=2, dropout=0.0) for _ in range(3)]
    wav, lens = torch.randn(2, 8000), torch.ones(2)
    z_base, base_lens = torch.randn(2, 10, 6), torch.tensor([10, 10])
    outputs = {}
    for mode in ("probability", "one"):
        mixture = MixtureOfWeakEncoders(pool, base_dim=6, routers=["dep"],
                                        selected_weight=mode).eval()
        torch.manual_seed(1)
        mixture.routers[0].w_dep.reset_parameters()
        out = mixture(wav, lens, z_base, base_lens)
        outputs[mode] = out
        out.features.sum().backward()
        assert mixture.routers[0].w_dep.weight.grad.abs().sum() > 0
    probability, one = outputs["probability"], outputs["one"]
    assert torch.equal(probability.selected, one.selected)
    p = probability.weights.max(dim=-1).values  # [B, 1]: the selected probabilities
    p = p[:, :, None]  # [B, 1, 1] over frames and features (one router)
    assert torch.all(p < 1)
    torch.testing.assert_close(one.features * p, probability.features)
    torch.testing.assert_close(one.loss, probability.loss)
    with pytest.raises(ValueError, match="selected_weight"):
        MixtureOfWeakEncoders(pool, base_dim=6, selected_weight="half")
