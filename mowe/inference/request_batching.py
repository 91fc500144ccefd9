"""Dynamic batching: concurrent requests answered together in one forward pass.

Request threads :meth:`~DynamicBatcher.submit` a clip and wait; one worker thread takes
the oldest waiting request, waits up to ``max_wait_ms`` for more (at most
``max_batch_size``), and answers those with the same decoding options in one batch.

Example
-------
>>> class Echo:
...     def answer_signals(self, signals, instructions, **options):
...         return [f"{len(s)}:{i}" for s, i in zip(signals, instructions)]
>>> batcher = DynamicBatcher(Echo(), max_batch_size=4, max_wait_ms=5).start()
>>> batcher.submit([0, 0, 0], "how long?").result(timeout=5)
'3:how long?'
>>> batcher.stop()
"""

import json
import logging
import queue
import threading
import time
from concurrent.futures import Future

logger = logging.getLogger(__name__)


class BusyError(RuntimeError):
    """The queue of waiting requests is full."""


class DynamicBatcher:
    """Collect concurrent requests into batches for ``model.answer_signals``.

    Arguments
    ---------
    model : object
        Has ``answer_signals(signals, instructions, batch_size=..., seed=..., **options)``.
    max_batch_size : int
        Most requests per batch.
    max_wait_ms : float
        How long the first request of a batch waits for company.
    max_queue : int
        Most waiting requests; more are refused with :class:`BusyError`.

    Attributes
    ----------
    batch_sizes : list of int
        Size of every batch run so far (for logs and tests).
    """

    def __init__(self, model, max_batch_size=8, max_wait_ms=10.0, max_queue=256):
        self.model = model
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.queue = queue.Queue(maxsize=int(max_queue))
        self.batch_sizes = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mowe-batcher", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout=10):
        self._stop.set()
        self._thread.join(timeout)

    def submit(self, signal, instruction, options=None, seed=None):
        """Queue one clip; returns a ``Future`` of its answer."""
        future = Future()
        try:
            self.queue.put_nowait((signal, instruction, dict(options or {}), seed, future))
        except queue.Full:
            raise BusyError(f"{self.queue.maxsize} requests are already waiting") from None
        return future

    @staticmethod
    def _key(item):
        return json.dumps([item[2], item[3]], sort_keys=True)

    def _collect(self):
        try:
            first = self.queue.get(timeout=0.1)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + self.max_wait
        while len(items) < self.max_batch_size:
            left = deadline - time.monotonic()
            try:
                items.append(self.queue.get(timeout=max(left, 0)) if left > 0
                             else self.queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _run(self):
        while not self._stop.is_set():
            items = self._collect()
            groups = {}
            for item in items:  # only requests with equal decoding options share a batch
                groups.setdefault(self._key(item), []).append(item)
            for group in groups.values():
                self._answer(group)

    def _answer(self, group):
        # requests whose client went away (their future cancelled) are not answered
        group = [item for item in group if item[4].set_running_or_notify_cancel()]
        if not group:
            return
        signals = [item[0] for item in group]
        instructions = [item[1] for item in group]
        options, seed = group[0][2], group[0][3]
        start = time.monotonic()
        try:
            answers = self.model.answer_signals(signals, instructions,
                                                batch_size=len(group), seed=seed, **options)
        except Exception as error:  # reported to each waiting request
            logger.exception("batch of %d failed", len(group))
            for item in group:
                item[4].set_exception(error)
            return
        self.batch_sizes.append(len(group))
        logger.info("answered a batch of %d in %.2f s", len(group), time.monotonic() - start)
        for item, answer in zip(group, answers):
            item[4].set_result(answer)
