"""Training batches loaded ahead of the loop by ``DataLoader`` worker processes.

The batches' item indices are drawn in the loop's process (the objective's ``batches`` with the trial's
generator); each batch is then loaded (files decoded, frames sampled, images augmented, text tokenized) by
the objective's ``load`` with a generator seeded by (trial seed, batch number). So a trial's batches are the
same whatever the number of workers and whichever worker loads which batch.

In data-parallel training every process draws the same global batches (``batch_size`` items per process) and
loads only its own slice of each (``distributed.shard``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from suites.engine.distributed import shard


class NumberedBatches(Dataset):
    """Batch ``i`` of a trial: ``objective.load(data, indices[i], rng(seed, i))`` (``rng(seed, i, rank)`` on
    data-parallel process ``rank`` > 0, whose slice draws its own augmentations)."""

    def __init__(self, objective, data: Any, indices: list, seed: int, rank: int = 0):
        self.objective, self.data, self.indices, self.seed, self.rank = objective, data, indices, seed, rank

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        key = [self.seed, i] if self.rank == 0 else [self.seed, i, self.rank]
        return self.objective.load(self.data, self.indices[i], np.random.default_rng(key))


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # a loading worker decodes; the trial's threads compute


def load_batches(objective, data: Any, batch_size: int, n_batches: int, rng: np.random.Generator, seed: int,
                 num_workers: int = 0, pin_memory: bool = False, start: int = 0, rank: int = 0,
                 processes: int = 1) -> Iterator:
    """Batches ``start`` .. ``n_batches`` - 1, loaded in order; with ``num_workers`` > 0 loaded ahead in worker
    processes. The indices of every batch are drawn first, so batch i is the same whatever ``start``. With
    ``processes`` > 1, global batches of ``processes * batch_size`` items are drawn and process ``rank`` loads
    its slice."""
    drawn = objective.batches(data, batch_size * processes, rng)
    indices = [shard(next(drawn), rank, processes) for _ in range(n_batches)]
    loader = DataLoader(Subset(NumberedBatches(objective, data, indices, seed, rank), range(start, n_batches)),
                        batch_size=None, shuffle=False, num_workers=num_workers, pin_memory=pin_memory,
                        worker_init_fn=_one_thread, prefetch_factor=4 if num_workers else None,
                        # its own generator: a loader left to draw its seed from torch's global one would shift
                        # the dropout draws of the loop (and of a resumed run against an uninterrupted one)
                        generator=torch.Generator().manual_seed(seed))
    return iter(loader)
