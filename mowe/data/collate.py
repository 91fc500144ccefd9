"""Batching that leaves out clips whose audio could not be loaded, and counts them.

The dataset's audio pipeline (:func:`mowe.data.make_dataset`) gives the
:class:`~mowe.data.AudioError` itself as ``sig`` when a clip is missing, unreadable,
empty or non-finite, instead of raising inside a DataLoader worker. This collate
function drops those examples with a warning naming the clip and the reason, counts
them, and pads the rest with SpeechBrain's ``PaddedBatch``. A batch with no usable
clip becomes ``None`` (the Brain and the decoder skip it).

Example
-------
>>> import torch
>>> from mowe.data.audio import AudioError
>>> collate = SkipUnreadableClips()
>>> batch = collate([{"id": "a", "sig": torch.zeros(4)},
...                  {"id": "b", "sig": AudioError("audio file is empty: b.wav")}])
>>> batch.id, collate.skipped
(['a'], {'b': 'audio file is empty: b.wav'})
"""

import logging

from speechbrain.dataio.batch import PaddedBatch

from mowe.data.audio import AudioError

logger = logging.getLogger(__name__)


class SkipUnreadableClips:
    """Collate function: ``PaddedBatch`` over the examples whose ``sig`` loaded.

    Attributes
    ----------
    skipped : dict
        ``{clip id: reason}`` of every clip left out so far (a clip seen again in a
        later epoch is counted once).
    """

    def __init__(self):
        self.skipped = {}

    def __call__(self, examples):
        usable = []
        for example in examples:
            signal = example.get("sig")
            if isinstance(signal, AudioError):
                if example["id"] not in self.skipped:
                    logger.warning("skipping clip %s: %s (%d skipped so far)", example["id"],
                                   signal, len(self.skipped) + 1)
                self.skipped[example["id"]] = str(signal)
            else:
                usable.append(example)
        if not usable:
            return None
        return PaddedBatch(usable)
