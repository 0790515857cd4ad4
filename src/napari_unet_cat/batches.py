"""Batches of training patches for Keras, drawn ahead on threads of our own."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

import numpy as np

from ._backend import keras
from .dataset import PatchSampler


class PatchBatches(keras.utils.PyDataset):
    """Random augmented batches, reproducible from ``(seed, epoch, step)``.

    Batches are drawn ahead on ``threads`` threads of our own, keyed by epoch and step,
    and handed to Keras in step order. Keras's own worker queue is left off on purpose:
    it keeps batches drawn ahead for "the next run" when a ``fit`` ends, so with one
    ``fit`` per epoch the next epoch began with whichever of them had finished, in
    timing-dependent order, and the same seed trained a different model.
    """

    #: Batches drawn ahead of the one being trained on.
    AHEAD = 4
    #: Batches kept after they were handed out: Keras's TensorFlow adapter reads the first
    #: two of every ``fit`` to learn their shapes, then asks for them again.
    KEPT = 2

    def __init__(self, sampler: PatchSampler, batch_size: int, steps: int, seed: int, threads: int = 2):
        super().__init__(workers=1, use_multiprocessing=False)
        self.sampler = sampler
        self.batch_size = batch_size
        self.steps = steps
        self.seed = seed
        self.epoch = 0
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="patches") if threads > 1 else None
        self._drawn: dict[tuple[int, int], Future] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.steps

    def draw(self, epoch: int, step: int):
        """The batch of ``step`` in ``epoch``: a pure function of the seed, epoch and step."""
        rng = np.random.default_rng([self.seed, epoch, step])
        return self.sampler.batch(rng, self.batch_size)

    def __getitem__(self, step: int):
        epoch = self.epoch
        now = epoch * self.steps + step
        wanted = [divmod(i, self.steps) for i in range(now, now + self.AHEAD + 1)]
        with self._lock:
            if self._pool is None:
                future = None
            else:
                for key in wanted:
                    if key not in self._drawn:
                        self._drawn[key] = self._pool.submit(self.draw, *key)
                future = self._drawn[(epoch, step)]
                # Drop only what lies behind: a step asked again must not discard the
                # batches already drawn ahead.
                for key in [k for k in self._drawn if k[0] * self.steps + k[1] < now - self.KEPT]:
                    self._drawn.pop(key).cancel()
        try:
            if future is not None:
                return future.result()
        except CancelledError:  # closed meanwhile
            pass
        return self.draw(epoch, step)

    def close(self) -> None:
        """Stop the drawing threads; batches still wanted are drawn in the caller's thread."""
        if self._pool is not None:
            with self._lock:
                pool, self._pool = self._pool, None
                for future in self._drawn.values():
                    future.cancel()
                self._drawn.clear()
            pool.shutdown(wait=True)
