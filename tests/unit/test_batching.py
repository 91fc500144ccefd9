"""Length-aware batching (mowe.data.batching, recipes/train.py): every clip once per
epoch, the budget kept, the same batches for a seed and epoch, and a run resumed
mid-epoch continuing with the epoch's remaining batches."""

import numpy as np
import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import SaveableDataLoader
from speechbrain.dataio.dataset import DynamicItemDataset
from conftest import load_train_module

from mowe.data.batching import (BucketBatchSampler, bucket_keys, duration_batch_sampler,
                                llm_token_counts, padded_share)


def corpus(count=103, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(count):
        data[f"utt{i:03d}"] = {"duration": float(rng.uniform(0.5, 10.0)),
                               "instruction": "Say it." * int(rng.integers(1, 4)),
                               "answer": "word " * int(rng.integers(1, 20))}
    dataset = DynamicItemDataset(data)
    dataset.set_output_keys(["id"])
    return dataset


class FakeModel:
    """What llm_token_counts needs of an AudioLLM: one token per character."""

    max_audio_seconds = 8.0
    adapter = type("Adapter", (), {"num_tokens": 25})()

    def prompt_ids(self, instruction):
        return [0] * 5, [0] * len(instruction)

    def answer_ids(self, answer):
        return [0] * (len(answer) + 1)


def flat(batches):
    return sorted(i for batch in batches for i in batch)


def test_bucket_batches_cover_the_epoch_in_fixed_size_batches_deterministically():
    costs = [(i * 7919) % 97 for i in range(103)]
    sampler = BucketBatchSampler(costs, batch_size=4, pool_batches=8, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    assert flat(first) == list(range(103)), "every clip exactly once per epoch"
    assert len(first) == len(sampler) == 26  # ceil(103 / 4): the steps of plain shuffling
    assert sorted(len(b) for b in first)[1:] == [4] * 25  # one partial batch at most
    again = BucketBatchSampler(costs, batch_size=4, pool_batches=8, seed=3)
    again.set_epoch(1)
    assert list(again) == first, "same seed and epoch, same batches"
    sampler.set_epoch(2)
    assert list(sampler) != first, "a new epoch reshuffles"
    other = BucketBatchSampler(costs, batch_size=4, pool_batches=8, seed=4)
    other.set_epoch(1)
    assert list(other) != first


def test_bucketing_pads_less_than_shuffling():
    dataset = corpus()
    costs = llm_token_counts(FakeModel(), dataset)
    tokens = [c[0] for c in costs]
    assert all(c[1] <= FakeModel.max_audio_seconds for c in costs), "clips are trimmed"
    rng = np.random.default_rng(0)
    order = rng.permutation(len(costs)).tolist()
    shuffled = [order[i:i + 4] for i in range(0, len(order), 4)]
    sampler = BucketBatchSampler(costs, batch_size=4, pool_batches=16, seed=0)
    sampler.set_epoch(1)
    assert padded_share(list(sampler), tokens) < 0.5 * padded_share(shuffled, tokens)


def test_duration_batches_keep_the_budget_and_cover_the_epoch():
    dataset = corpus()
    sampler = duration_batch_sampler(dataset, max_batch_seconds=20.0, num_buckets=5, seed=1,
                                     trim_seconds=8.0)
    durations = [min(dataset.data[i]["duration"], 8.0) for i in dataset.data_ids]
    sampler.set_epoch(1)
    batches = list(sampler)
    assert flat(batches) == list(range(len(dataset)))
    for batch in batches:  # padded audio: clips x longest clip
        assert len(batch) * max(durations[i] for i in batch) <= 20.0 or len(batch) == 1
    assert len({len(b) for b in batches}) > 1, "batches vary in clip count"
    again = duration_batch_sampler(dataset, 20.0, 5, seed=1, trim_seconds=8.0)
    again.set_epoch(1)
    assert list(again) == batches
    sampler.set_epoch(2)
    assert list(sampler) != batches


@pytest.mark.parametrize("kind", ["bucket", "duration"])
def test_resume_mid_epoch_continues_with_the_same_batches(tmp_path, kind):
    """SpeechBrain's SaveableDataLoader saves the batch position; the sampler, rebuilt
    with the same seed and set to the checkpoint's epoch, gives the same batches."""
    dataset = corpus()

    def loader():
        if kind == "bucket":
            sampler = BucketBatchSampler(bucket_keys(llm_token_counts(FakeModel(), dataset)),
                                         4, 8, 7)
        else:
            sampler = duration_batch_sampler(dataset, 20.0, 5, seed=7)
        sampler.set_epoch(2)  # what Brain.fit does at the epoch's start
        return SaveableDataLoader(dataset, batch_sampler=sampler,
                                  collate_fn=lambda rows: [r["id"] for r in rows])

    full = list(loader())
    interrupted = loader()
    iterator = iter(interrupted)
    seen = [next(iterator) for _ in range(5)]
    interrupted._speechbrain_save(tmp_path / "loader.ckpt")
    resumed = loader()
    resumed._speechbrain_load(tmp_path / "loader.ckpt", end_of_epoch=False)
    assert seen + list(resumed) == full


def test_brain_calls_set_epoch_on_a_batch_sampler_without_ddp():
    from mowe.train.brain import MoWEBrain

    brain = MoWEBrain(modules={"model": torch.nn.Linear(1, 1)},
                      opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
                      hparams={}, run_opts={"device": "cpu"})
    dataset = corpus(10)
    sampler = BucketBatchSampler([0] * 10, 4, seed=0)
    brain.make_dataloader(dataset, sb.Stage.TRAIN, batch_sampler=sampler)
    assert brain.train_sampler is sampler  # Brain._fit_train calls its set_epoch


def test_train_recipe_chooses_the_sampler_and_the_accumulation():
    train = load_train_module()
    dataset = corpus()
    hparams = {"batch_size": 4, "global_batch_size": 8, "bucketing": True, "seed": 1}
    assert train.batch_plan(hparams, 1) == (4, 2)
    kwargs = train.train_loader_kwargs(hparams, dataset, FakeModel())
    assert isinstance(kwargs["batch_sampler"], BucketBatchSampler)
    assert len(kwargs["batch_sampler"]) == 26  # the same steps as shuffled batches of 4
    plain = train.train_loader_kwargs(dict(hparams, bucketing=False), dataset, FakeModel())
    assert plain["shuffle"] and plain["batch_size"] == 4
    dynamic = dict(hparams, max_batch_seconds=20.0, global_batch_seconds=80.0)
    assert train.batch_plan(dynamic, 2) == (4, 2)  # 80 s = 2 processes x 2 x 20 s
    assert train.batch_plan(dict(dynamic, global_batch_seconds=None,
                                 grad_accumulation_factor=3), 1) == (4, 3)
    kwargs = train.train_loader_kwargs(dynamic, dataset, FakeModel())
    assert type(kwargs["batch_sampler"]).__name__ == "DynamicBatchSampler"
    with pytest.raises(SystemExit):
        train.train_loader_kwargs(dict(dynamic, sorting="ascending"), dataset, FakeModel())


def test_decoding_order_groups_tasks_and_starts_with_the_longest_clip():
    """recipes/decode.py's order: one task after another (the task with the longest clip
    first), longest first within a task, every clip exactly once."""
    from mowe.data.batching import decoding_order

    rng = np.random.default_rng(0)
    clips = [(f"utt{i}", task, float(rng.uniform(1, 9)))
             for i, task in enumerate(rng.choice(["asr", "er", "aqa", None], size=40))]
    order = decoding_order(clips)
    assert sorted(order) == sorted(utt for utt, _, _ in clips)
    by_id = {utt: (task, seconds) for utt, task, seconds in clips}
    assert by_id[order[0]][1] == max(seconds for _, _, seconds in clips)
    tasks = [by_id[utt][0] for utt in order]
    runs = [task for index, task in enumerate(tasks) if index == 0 or task != tasks[index - 1]]
    assert len(runs) == len(set(tasks))  # each task in one run
    for task in set(tasks):
        seconds = [by_id[utt][1] for utt in order if by_id[utt][0] == task]
        assert seconds == sorted(seconds, reverse=True)
