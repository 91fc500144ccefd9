"""Learning rate per module (mowe/train/param_groups.py) through MoWEBrain on the YAML spec."""

import functools
import logging

import pytest
import speechbrain as sb
import torch
import transformers

from conftest import load_spec
from mowe.train.brain import MoWEBrain
from mowe.train.param_groups import ParamGroupError, build_param_groups
from conftest import padded_batch

GROUPS = {
    "pretrained": {"modules": ["base_encoder"], "lr": 1.0e-4},
    "pool": {"modules": ["mixture.encoders"], "lr": 3.0e-3},
    "pool0": {"modules": ["mixture.encoders.0"], "lr": 7.0e-3, "warmup_steps": 4},
    "new": {"modules": ["adapter", "projection"], "lr": 2.0e-2},
}
DEFAULT_LR = 5.0e-2


def brain_with_groups(model, groups, schedule=True):
    hparams = {"param_groups": groups, "mowe_loss_weight": 0.1}
    if schedule:  # the recipes' schedule: cosine with (here no) global warm-up
        hparams["lr_scheduler"] = lambda optimizer: transformers.get_cosine_schedule_with_warmup(
            optimizer, num_warmup_steps=0, num_training_steps=1000)
    # plain SGD: a step moves every weight by exactly -lr * grad, so the test sees the
    # rate each parameter was really updated with
    return MoWEBrain(modules={"model": model},
                     opt_class=functools.partial(torch.optim.SGD, lr=DEFAULT_LR),
                     hparams=hparams, run_opts={"device": "cpu"})


def test_each_group_is_updated_at_its_own_rate(tiny_models, audio_batch, caplog):
    torch.manual_seed(0)
    model = load_spec(tiny_models, freeze_base_encoder=False, lora_dropout=0.0,
                      weak_encoder_dropout=0.0,
                      dispatch="dense")["model"]  # every encoder gets a gradient
    brain = brain_with_groups(model, GROUPS)
    with caplog.at_level(logging.INFO, logger="mowe.train.param_groups"):
        brain.init_optimizers()
    logged = caplog.text
    for name in ("pretrained", "pool", "pool0", "new", "default"):
        assert f"parameter group {name}" in logged
    watched = {  # parameter name prefix -> the rate its update must show
        "base_encoder.": 1.0e-4,
        "mixture.encoders.1.": 3.0e-3,
        "mixture.encoders.0.": 7.0e-3 / 4,  # its own warm-up: 1/4 of the rate at step 0
        "adapter.": 2.0e-2,
        "projection.": 2.0e-2,
        "mixture.routers.": DEFAULT_LR,
        "llm.": DEFAULT_LR,  # the LoRA matrices
    }
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # the gradient of the step: computed the way fit_batch computes it
    batch = padded_batch(audio_batch)
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.requires_grad and p.grad is not None}
    brain.optimizer.step()
    deltas, gradients = {}, {}
    for name, parameter in model.named_parameters():
        prefix = next((p for p in watched if name.startswith(p)), None)
        if prefix is None or name not in grads:
            continue
        deltas.setdefault(prefix, []).append((before[name] - parameter.detach()).flatten())
        gradients.setdefault(prefix, []).append(grads[name].flatten())
    assert set(gradients) == set(watched), f"no gradient reached {set(watched) - set(gradients)}"
    for prefix, rate in watched.items():
        delta = torch.cat(deltas[prefix]).double()
        grad = torch.cat(gradients[prefix]).double()
        # the rate the update shows, least squares over the module's weights (float32
        # rounding of weights near 1 blurs single small updates; the rates differ 2x+)
        applied = float(delta @ grad / (grad @ grad))
        assert applied == pytest.approx(rate, rel=0.02), \
            f"{prefix} was updated at {applied:.4g}, not {rate:.4g}"


def test_a_group_warm_up_ramps_on_top_of_the_schedule(tiny_models):
    model = load_spec(tiny_models)["model"]
    brain = brain_with_groups(model, {"new": {"modules": ["adapter"], "lr": 0.01,
                                              "warmup_steps": 4}})
    brain.init_optimizers()
    rates = []
    for _ in range(6):
        rates.append({g["name"]: g["lr"] for g in brain.optimizer.param_groups})
        brain.optimizer.step()
        brain.lr_scheduler.step()
    assert [round(r["new"], 6) for r in rates[:5]] == [0.0025, 0.005, 0.0075, 0.01, 0.01]
    assert rates[0]["default"] == pytest.approx(DEFAULT_LR)
    state = brain.lr_scheduler.state_dict()  # a resume's weights-only loader takes it
    assert all(item is None or item == {} for item in state["lr_lambdas"])


def test_names_are_checked_and_absent_or_frozen_parts_skipped(tiny_models, caplog):
    model = load_spec(tiny_models, freeze_base_encoder=True)["model"]
    with caplog.at_level(logging.INFO, logger="mowe.train.param_groups"):
        groups, _ = build_param_groups(model, {"pretrained": {"modules": ["base_encoder"],
                                                              "lr": 1e-5}})
    assert [g["name"] for g in groups] == ["default"]
    assert "base_encoder" in caplog.text and "frozen" in caplog.text
    baseline = load_spec(tiny_models, yaml_overrides="mixture: null\n")["model"]
    groups, _ = build_param_groups(baseline, {"pool": {"modules": ["mixture.encoders"],
                                                       "lr": 1e-5}})
    assert [g["name"] for g in groups] == ["default"]
    with pytest.raises(ParamGroupError, match="adaptor.*names no part"):
        build_param_groups(model, {"new": {"modules": ["adaptor"], "lr": 1e-3}})
    with pytest.raises(ParamGroupError, match="modules"):
        build_param_groups(model, {"x": {"lr": 1e-5}})
    with pytest.raises(ParamGroupError, match="unknown keys"):
        build_param_groups(model, {"x": {"modules": ["adapter"], "rate": 1e-5}})


def test_pretrained_encoders_names_the_base_and_pretrained_pool_encoders(tiny_models):
    from mowe.train.param_groups import pretrained_encoder_prefixes

    small_pool = load_spec(tiny_models, freeze_base_encoder=False)["model"]
    assert pretrained_encoder_prefixes(small_pool) == ["base_encoder"]
    whisper_pool = load_spec(tiny_models, freeze_base_encoder=False, yaml_overrides=f"""
weak_encoder_pool: !apply:mowe.models.mixture.repeat
    - !name:mowe.models.encoders.WhisperEncoder
        source: {tiny_models["whisper"]}
        save_path: {tiny_models["cache"]}
    - 2
""")["model"]
    assert pretrained_encoder_prefixes(whisper_pool) == [
        "base_encoder", "mixture.encoders.0", "mixture.encoders.1"]
    groups, _ = build_param_groups(whisper_pool, {"pre": {"modules": ["pretrained_encoders"],
                                                          "lr": 5e-5}})
    pre = next(g for g in groups if g["name"] == "pre")
    expected = [p for n, p in whisper_pool.named_parameters() if p.requires_grad and
                n.startswith(("base_encoder.", "mixture.encoders."))]
    assert {id(p) for p in pre["params"]} == {id(p) for p in expected}


def test_gradient_clipping_covers_every_group(tiny_models, audio_batch):
    """One gradient norm over all groups, each group scaled by the same factor: SpeechBrain
    alone clips only the first group (here the base encoder's), leaving the LoRA,
    adapter and projection of the other groups unclipped."""
    torch.manual_seed(0)
    model = load_spec(tiny_models, freeze_base_encoder=False, lora_dropout=0.0,
                      weak_encoder_dropout=0.0)["model"]
    groups = {"pretrained": {"modules": ["pretrained_encoders"], "lr": 1.0e-2}}
    brain = MoWEBrain(modules={"model": model},
                      opt_class=functools.partial(torch.optim.SGD, lr=DEFAULT_LR),
                      hparams={"param_groups": groups, "mowe_loss_weight": 0.1},
                      run_opts={"device": "cpu"})
    brain.init_optimizers()
    assert [len(g["params"]) > 0 for g in brain.optimizer.param_groups] == [True, True]
    batch = padded_batch(audio_batch)
    loss = brain.compute_objectives(brain.compute_forward(batch, sb.Stage.TRAIN), batch,
                                    sb.Stage.TRAIN)
    loss.backward()
    params = [p for g in brain.optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
             for p in params]
    total_norm = float(torch.cat([g.flatten() for g in grads]).norm())
    brain.max_grad_norm = total_norm / 4  # every group's step must shrink 4x
    brain._grad_norms = []
    brain.optimizers_step()
    assert brain._grad_norms == [pytest.approx(total_norm, rel=1e-4)]  # logged per epoch
    index = 0
    for group in brain.optimizer.param_groups:
        count = len(group["params"])
        delta = torch.cat([(b - p.detach()).flatten() for b, p in
                           zip(before[index:index + count], group["params"])]).double()
        grad = torch.cat([g.flatten() for g in grads[index:index + count]]).double()
        index += count
        scale = float(delta @ grad / (grad @ grad)) / group["lr"]
        assert scale == pytest.approx(0.25, rel=0.02), \
            f"a group with lr {group['lr']} was scaled by {scale:.3g}"
