"""Splitting a data set's sample indices across ranks."""

from __future__ import annotations

import operator

import numpy

__all__ = ["shard"]


def shard(
    n_samples: int,
    rank: int,
    size: int,
    *,
    seed: int | None = None,
    epoch: int = 0,
    drop_last: bool = False,
) -> numpy.ndarray:
    """The sample indices rank ``rank`` of ``size`` ranks reads in one epoch.

    The rule is that of ``torch.utils.data.DistributedSampler``:

    1. ``indices = arange(n_samples)``; when ``seed`` is not None it is shuffled with
       ``numpy.random.default_rng((seed, epoch)).permutation(n_samples)``.  Every rank
       computes the same permutation, so pass the same ``seed`` on every rank and a new
       ``epoch`` each epoch to reshuffle.
    2. Without ``drop_last`` the list is padded by wrapping around to its beginning (repeated
       as often as needed) up to ``size * ceil(n_samples / size)`` entries, so every rank gets
       ``ceil(n_samples / size)`` indices and a few samples are read twice per epoch.  With
       ``drop_last`` the tail is cut to ``size * (n_samples // size)`` entries instead, so every
       rank gets ``n_samples // size`` indices and a few samples are skipped this epoch.
    3. Rank ``r`` takes ``indices[r::size]``.

    All ranks therefore get equally many indices (lock-step collectives never wait on a rank
    with an extra batch), and when ``n_samples`` is divisible by ``size`` the shards are a
    disjoint cover of ``range(n_samples)``.

    Args:
        n_samples: number of samples in the data set (>= 0).
        rank: this rank, ``0 <= rank < size``.
        size: number of ranks (>= 1).
        seed: shuffle seed (None: no shuffling, indices in order).
        epoch: epoch number, mixed into the shuffle seed.
        drop_last: drop the tail instead of padding.

    Returns:
        A 1-D ``int64`` array of indices into the data set.
    """
    n_samples = operator.index(n_samples)
    rank = operator.index(rank)
    size = operator.index(size)
    epoch = operator.index(epoch)
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size}), got {rank}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if seed is not None:
        seed = operator.index(seed)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        indices = numpy.random.default_rng((seed, epoch)).permutation(n_samples)
    else:
        indices = numpy.arange(n_samples)
    indices = indices.astype(numpy.int64, copy=False)

    if drop_last:
        total = size * (n_samples // size)
        indices = indices[:total]
    else:
        total = size * -(-n_samples // size)
        pad = total - n_samples
        if pad and n_samples:
            reps = -(-pad // n_samples)
            indices = numpy.concatenate([indices, numpy.tile(indices, reps)[:pad]])
    return numpy.ascontiguousarray(indices[rank:total:size])
