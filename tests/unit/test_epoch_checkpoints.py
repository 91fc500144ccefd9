"""Keeping every epoch's checkpoint (``keep_epoch_checkpoints``) and loading one by epoch."""

import speechbrain as sb
import torch

from conftest import load_spec, make_brain, noise_manifest
from mowe.train.checkpoints import recover_epoch, saved_epochs


def fit(tiny_models, tmp_path, epochs, **hparams):
    from mowe.data import make_dataset

    torch.manual_seed(0)
    model = load_spec(tiny_models)["model"]
    train = make_dataset(noise_manifest(tmp_path, 4, 0))
    valid = make_dataset(noise_manifest(tmp_path, 2, 1))
    brain = make_brain(model, tmp_path, **hparams)
    weights = {}
    original = brain.on_stage_end

    def remember(stage, stage_loss, epoch=None):  # the weights each epoch's checkpoint holds
        original(stage, stage_loss, epoch)
        if stage == sb.Stage.VALID:
            weights[epoch] = {k: v.clone() for k, v in model.state_dict().items()
                              if "lora_" in k}

    brain.on_stage_end = remember
    brain.fit(sb.utils.epoch_loop.EpochCounter(epochs), train, valid,
              train_loader_kwargs={"batch_size": 2}, valid_loader_kwargs={"batch_size": 2})
    return brain, model, weights


def test_every_epoch_is_kept_and_each_loads_its_own_weights(tiny_models, tmp_path):
    brain, model, weights = fit(tiny_models, tmp_path, 3, keep_epoch_checkpoints=True)
    assert saved_epochs(brain.checkpointer) == [1, 2, 3]
    assert not torch.equal(*(next(iter(weights[e].values())) for e in (1, 3)))
    for epoch in (2, 1, 3):
        checkpoint = recover_epoch(brain.checkpointer, epoch)
        assert checkpoint.meta["epoch"] == epoch
        state = model.state_dict()
        for key, value in weights[epoch].items():
            assert torch.equal(state[key], value), (epoch, key)
    assert recover_epoch(brain.checkpointer, 4) is None


def test_by_default_only_the_best_and_latest_epochs_stay(tiny_models, tmp_path):
    brain, _, _ = fit(tiny_models, tmp_path, 3)
    kept = saved_epochs(brain.checkpointer)
    assert 3 in kept and len(kept) <= 2
