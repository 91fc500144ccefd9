"""A stand-in model for in-process server tests: answers instantly (or slowly), counts."""

import threading
import time
from types import SimpleNamespace

from mowe.inference.api import Answer
from mowe.inference.server_app import ServerState
from mowe.inference.request_batching import DynamicBatcher
from mowe.inference.openai_protocol import Limits


class EchoModel:
    """Answers each clip with its length and instruction, after ``delay`` seconds."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.answered = 0
        self.lock = threading.Lock()

    def answer_signals(self, signals, instructions, batch_size=None, seed=None, **options):
        time.sleep(self.delay)
        with self.lock:
            self.answered += len(signals)
        return [Answer(f"{s.numel()} samples: {i}", [0, 1], ["indep", "dep"])
                for s, i in zip(signals, instructions)]


class _Tokenizer:
    def __call__(self, text, add_special_tokens=False):
        return SimpleNamespace(input_ids=text.split())


def fake_state(model, limits=None, **kwargs):
    """A :class:`ServerState` around ``model`` with a started batcher."""
    inference = SimpleNamespace(decoding={"max_new_tokens": 8, "num_beams": 1},
                                model=SimpleNamespace(tokenizer=_Tokenizer()))
    batcher = DynamicBatcher(model, max_batch_size=4, max_wait_ms=5).start()
    return ServerState(inference, batcher, limits or Limits(), "mowe", **kwargs)
