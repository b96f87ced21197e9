"""Data parallelism across processes (one per GPU), as BLIP trains: what the loop and the objectives need of
``torch.distributed``. Every function is the identity in a single process, so one code path serves both.

The process group is set up by whoever starts the processes (Ray Train's ``TorchTrainer`` for a suite trial:
NCCL on GPUs, gloo on CPUs). Every process draws the same global batch and computes on its own slice of it
(``shard``); contrastive features are gathered across processes so that ITC sees the global batch, and
gradients are averaged before each optimizer step. Gathered with gradient, each process's loss reaches the
other processes' features, so the averaged gradient is the gradient of the global batch's mean loss: the
same as one process computing the whole batch.

Evaluation is shared out the same way where it is costly (ITM re-ranking, VQA answers): each process computes a
contiguous share (``part``) and every process gathers all of them, so every process ends with the same metrics.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """-> (this process's rank, number of processes); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def share(n: int, rank: int, size: int) -> slice:
    """Process ``rank``'s contiguous share of ``n`` items: the first ``n % size`` shares one item longer, so that
    concatenated in rank order the shares are the items in order again."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def shard(batch, rank: int, size: int):
    """Process ``rank``'s slice of a global batch (an index array): gathered features keep the global batch's
    order."""
    return batch if size == 1 else np.asarray(batch)[share(len(batch), rank, size)]


def part(n: int) -> slice:
    """This process's share of ``n`` items of work that every process could do alone (evaluation);
    ``gather_parts`` / ``gather_lists`` put the shares back together in rank order."""
    return share(n, *world())


def gather_parts(tensor: torch.Tensor) -> torch.Tensor:
    """Each process's (n_rank, ...) share, the n_rank may differ -> (sum of n_rank, ...) in rank order, on every
    process."""
    if world()[1] == 1:
        return tensor
    sizes = gather(torch.tensor([len(tensor)], device=tensor.device), grad=False).tolist()
    padded = torch.cat([tensor, tensor.new_zeros(max(sizes) - len(tensor), *tensor.shape[1:])])
    return torch.cat([chunk[:n] for chunk, n in zip(gather(padded, grad=False).split(max(sizes)), sizes)])


def gather_lists(items: list) -> list:
    """Each process's list (picklable items) -> every process's, concatenated in rank order, on every process."""
    size = world()[1]
    if size == 1:
        return items
    lists = [None] * size
    dist.all_gather_object(lists, items)
    return [item for one in lists for item in one]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends every process's gradient for a slice back to the process that owns it."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # sum over processes: every process's loss used every slice
        rank, size = world()
        return grad.chunk(size)[rank]


def gather(tensor: torch.Tensor, grad: bool = True) -> torch.Tensor:
    """(B, ...) on each process -> (size * B, ...) in rank order; with ``grad``, differentiable (each process
    must give the same B)."""
    if world()[1] == 1:
        return tensor
    if grad and tensor.requires_grad:
        return _GatherWithGrad.apply(tensor)
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def gather_padded(tensor: torch.Tensor, value: int = 0) -> torch.Tensor:
    """(B, L) -> (size * B, L_max), each process's rows padded with ``value`` to the longest L of any process
    (token ids and attention masks: each process pads its own batch to its own longest caption)."""
    if world()[1] == 1:
        return tensor
    length = torch.tensor([tensor.shape[1]], device=tensor.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    return gather(torch.nn.functional.pad(tensor, (0, int(length) - tensor.shape[1]), value=value), grad=False)


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each gradient by its mean over processes: one all-reduce of one flat buffer per dtype (a
    parameter without a gradient on this process counts as zero, so every process sends the same layout)."""
    size = world()[1]
    if size == 1:
        return
    by_dtype: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        flat /= size
        for p, g in zip(group, flat.split([p.numel() for p in group])):
            p.grad.copy_(g.view_as(p.grad))


def mean_across(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scalars averaged over processes (what the trial logs: the global batch's mean losses)."""
    size = world()[1]
    if size == 1 or not values:
        return values
    names = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in names])
    dist.all_reduce(stacked)
    return dict(zip(names, stacked / size))
