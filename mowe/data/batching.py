"""Length-aware batching: fewer padded positions in the encoders and in the LLM.

Two samplers, both deterministic per ``(seed, epoch)`` so that a run resumed mid-epoch
replays the epoch's batches and SpeechBrain's ``SaveableDataLoader`` skips the ones
already trained on (the batch position is saved in the checkpoint, the epoch by the
``EpochCounter``):

* :class:`BucketBatchSampler` (``bucketing: True``): batches of exactly ``batch_size``
  clips, each drawn from a pool of ``pool_batches`` batches of shuffled clips sorted by
  cost (LLM tokens, then seconds). The number of batches per epoch, and so the number of
  optimizer steps and the meaning of ``global_batch_size``, are those of plain shuffling.
  Written here rather than reusing SpeechBrain's ``DynamicBatchSampler`` because that one
  fills batches up to a length budget and leaves a partial batch per bucket: the batch
  count (hence the optimizer steps of a recipe) would change.
* SpeechBrain's ``DynamicBatchSampler`` (``max_batch_seconds``): batches of a varying
  number of clips holding at most ``max_batch_seconds`` of *padded* audio (clip count x
  longest clip; a single clip longer than the budget is a batch of its own) — icefall's
  ``--max-duration``. Built by :func:`duration_batch_sampler`.

:func:`llm_token_counts` gives the LLM positions of a clip (prompt, audio tokens,
answer), from the model's own tokenizer and chat template, and its seconds;
:func:`bucket_keys` makes the sort key of both.
"""

import math

import numpy as np
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler):
    """Fixed-size batches of clips of similar cost, reshuffled every epoch.

    An epoch shuffles the clips, cuts the order into pools of ``pool_batches *
    batch_size`` clips, sorts each pool by ``costs`` (ties broken by the shuffled order),
    cuts it into batches and shuffles the order of all batches. Only the last pool can
    give a batch of fewer than ``batch_size`` clips (the same count as plain shuffling).

    Arguments
    ---------
    costs : list
        Per-clip sort key (a number or a tuple, e.g. ``(llm_tokens, seconds)``), in
        dataset order.
    batch_size : int
        Clips per batch.
    pool_batches : int
        Batches per sorting pool: larger pools pad less, smaller pools keep batches
        more random.
    seed : int
        With the epoch, fixes the batches.
    drop_last : bool
        Drop the one batch with fewer than ``batch_size`` clips.

    Example
    -------
    >>> sampler = BucketBatchSampler([5, 1, 4, 2, 3, 6], batch_size=2, pool_batches=3)
    >>> sampler.set_epoch(1)
    >>> sorted(sorted(b) for b in sampler)  # clips of similar cost share a batch
    [[0, 5], [1, 3], [2, 4]]
    >>> len(sampler)
    3
    """

    def __init__(self, costs, batch_size, pool_batches=16, seed=0, drop_last=False):
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be at least 1")
        self.costs = list(costs)
        self.batch_size = int(batch_size)
        self.pool_batches = int(pool_batches)
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch):
        """Choose the epoch whose batches :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def batches(self):
        """The list of batches (lists of dataset indices) of the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.costs)).tolist()
        pool = self.pool_batches * self.batch_size
        batches = []
        for begin in range(0, len(order), pool):
            chunk = sorted(order[begin:begin + pool], key=lambda i: self.costs[i])
            batches += [chunk[i:i + self.batch_size]
                        for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self):
        if self.drop_last:
            return len(self.costs) // self.batch_size
        return math.ceil(len(self.costs) / self.batch_size)


def audio_token_estimate(model, seconds):
    """LLM audio tokens of a clip of ``seconds`` (for sorting only): the linear
    adapter's fixed count, or ``ceil(frames / stride)`` for the Conv1D adapter at the
    base encoder's frame rate (Whisper: 50 frames/s)."""
    adapter = getattr(model, "adapter", None)
    stride = getattr(adapter, "stride", None)
    if stride:
        rate = getattr(model.base_encoder, "frames_per_second", 50)
        return math.ceil(seconds * rate / stride)
    return int(getattr(adapter, "num_tokens", 0) or 0)


def llm_token_counts(model, dataset):
    """Per clip of ``dataset`` (in its order): LLM positions and seconds.

    Arguments
    ---------
    model : mowe.models.audio_llm.AudioLLM
        Gives the chat template, tokenizer and adapter.
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        Entries with ``instruction``, ``answer`` and ``duration``.

    Returns
    -------
    list of (int, float)
        ``(prompt + audio + answer tokens, seconds)`` per clip.
    """
    trim = getattr(model, "max_audio_seconds", None)
    counts = []
    for data_id in dataset.data_ids:
        entry = dataset.data[data_id]
        seconds = float(entry["duration"])
        if trim:
            seconds = min(seconds, float(trim))
        prefix, suffix = model.prompt_ids(entry["instruction"])
        tokens = (len(prefix) + len(suffix) + len(model.answer_ids(entry["answer"]))
                  + audio_token_estimate(model, seconds))
        counts.append((tokens, seconds))
    return counts


def bucket_keys(counts, token_step=8):
    """Sort keys for :class:`BucketBatchSampler` from :func:`llm_token_counts`: LLM
    tokens in steps of ``token_step``, then seconds. On the default synthetic corpus the
    LLM length varies little while durations vary a lot; sorting by exact token count
    alone left much of the audio padding, steps of 8 tokens then seconds cut both the
    LLM's and the audio's padding (pools of 16 batches; the figures,
    ``padded_tokens_share`` and ``padded_audio_share`` of ``bench/run_all.py``, are in
    bench/RESULTS.md).

    Example
    -------
    >>> bucket_keys([(65, 2.5), (70, 1.0)])
    [(8, 2.5), (8, 1.0)]
    """
    return [(tokens // token_step, seconds) for tokens, seconds in counts]


def padded_share(batches, lengths):
    """Share of padded positions when ``batches`` (lists of indices) are padded to
    their longest member: ``1 - sum(length) / sum(len(batch) * max length)``.

    Example
    -------
    >>> round(padded_share([[0, 1]], [3, 1]), 3)
    0.333
    """
    used = total = 0
    for batch in batches:
        values = [lengths[i] for i in batch]
        used += sum(values)
        total += len(values) * max(values)
    return 1.0 - used / total if total else 0.0


def duration_batch_sampler(dataset, max_batch_seconds, num_buckets=10, seed=0,
                           trim_seconds=None):
    """SpeechBrain's ``DynamicBatchSampler`` over ``dataset`` by clip duration (seconds,
    cut at ``trim_seconds``): batches of at most ``max_batch_seconds`` padded audio,
    shuffled deterministically per seed and epoch."""
    from speechbrain.dataio.sampler import DynamicBatchSampler

    def seconds(entry):
        value = float(entry["duration"])
        return min(value, float(trim_seconds)) if trim_seconds else value

    lengths = [seconds(dataset.data[i]) for i in dataset.data_ids]
    return DynamicBatchSampler(dataset, max_batch_length=float(max_batch_seconds),
                               num_buckets=int(num_buckets), lengths_list=lengths,
                               shuffle=True, batch_ordering="random", seed=int(seed))


__all__ = ["BucketBatchSampler", "audio_token_estimate", "bucket_keys", "duration_batch_sampler",
           "llm_token_counts", "padded_share"]


def decoding_order(clips):
    """Order clips for batched decoding: grouped by task, longest first within a group.

    A batch generates until its longest answer ends, so batches of one task (answers of
    similar length: an emotion label, a transcript) waste fewer decoding steps on rows
    that have finished than batches that mix a one-word answer with a transcript.
    Groups come in the order of their longest clip, so the first batch holds the
    longest clip (an out-of-memory error shows up at once). Greedy answers do not
    depend on the batch a clip is in (tests/unit/test_model.py), only the time does.

    Arguments
    ---------
    clips : list of (str, str or None, float)
        ``(id, task, duration)``; a clip without a task is grouped by what is given
        instead (e.g. its instruction).

    Returns
    -------
    list of str
        The ids in decoding order.

    Example
    -------
    >>> decoding_order([("a", "asr", 3.0), ("b", "er", 9.0), ("c", "asr", 5.0),
    ...                 ("d", "er", 1.0)])
    ['b', 'd', 'c', 'a']
    """
    longest = {}
    for _, task, duration in clips:
        longest[task] = max(longest.get(task, 0.0), duration)
    return [utt for utt, _, _ in sorted(
        clips, key=lambda clip: (-longest[clip[1]], str(clip[1]), -clip[2], clip[0]))]
