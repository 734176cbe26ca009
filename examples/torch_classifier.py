"""A PyTorch digit classifier trained data-parallel with ringred.DistributedOptimizer.

Data: scikit-learn's "digits" set (1,797 handwritten digits, 8x8 pixels, shipped inside the
scikit-learn package: nothing is downloaded).  Model: a small CNN.  Every rank builds the
model from its own seed; broadcast_parameters makes the weights rank 0's.  Each epoch every
rank trains on its own shard of the training set (ringred.data.shard); gradient hooks start
each gradient's allreduce while backward is still running, and step() waits for them.

    mpirun -np 2 python examples/torch_classifier.py [--optimizer sgd|adam] [--epochs N]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn

import ringred
from ringred.data import shard


def load_digits_split(test_size: int = 297) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): pixels scaled to [0, 1], a fixed random split."""
    from sklearn.datasets import load_digits  # the data ships inside scikit-learn

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # N,1,8,8
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.tensor(np.random.default_rng(0).permutation(len(y)))
    test, train = order[:test_size], order[test_size:]
    return x[train], y[train], x[test], y[test]


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 4 x 4
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy on (x, y): each rank scores a part, the counts are summed across ranks."""
    part = np.array_split(np.arange(len(y)), ringred.size())[ringred.rank()]
    with torch.no_grad():
        correct = (model(x[part]).argmax(1) == y[part]).sum().item()
    total = ringred.allreduce(np.array([correct, len(part)], dtype=np.int64), op=ringred.Sum,
                              name="accuracy")
    return float(total[0]) / float(total[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32, help="mini-batch per rank")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--min-accuracy", type=float, default=0.0,
                    help="exit non-zero if the final test accuracy is below this")
    args = ap.parse_args()

    ringred.init()
    rank, size = ringred.rank(), ringred.size()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // ringred.local_size()))
    x_train, y_train, x_test, y_test = load_digits_split()

    torch.manual_seed(1000 + rank)  # a different initialisation on every rank ...
    model = make_model()
    ringred.broadcast_parameters(model.state_dict(), root_rank=0)  # ... made rank 0's
    if args.optimizer == "adam":
        inner = torch.optim.Adam(model.parameters(), lr=args.lr or 2e-3)
    else:
        inner = torch.optim.SGD(model.parameters(), lr=args.lr or 0.05, momentum=0.9,
                                nesterov=True)
    opt = ringred.DistributedOptimizer(inner, named_parameters=model.named_parameters())
    ringred.broadcast_optimizer_state(opt, root_rank=0)  # matters when resuming
    loss_fn = nn.CrossEntropyLoss()
    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"digits: {len(y_train)} train / {len(y_test)} test images; CNN with {n_params} "
              f"parameters; {args.optimizer}; {size} ranks x {args.batch} per batch", flush=True)

    for epoch in range(args.epochs):
        model.train()
        mine = torch.from_numpy(shard(len(y_train), rank, size, seed=0, epoch=epoch))
        total = 0.0
        batches = 0
        for start in range(0, len(mine), args.batch):
            idx = mine[start:start + args.batch]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()  # hooks start each gradient's allreduce as it is ready
            opt.step()       # wait for the averaged gradients, then update
            total += loss.item()
            batches += 1
        model.eval()
        mean_loss = ringred.allreduce(np.array([total / batches]), name="loss")[0]
        acc = evaluate(model, x_test, y_test)
        if rank == 0:
            print(f"epoch {epoch}  train loss {mean_loss:.4f}  test accuracy {acc:.3f}",
                  flush=True)

    digests = ringred.allgather_object(
        b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    )
    same = len(set(digests)) == 1
    acc = evaluate(model, x_test, y_test)
    if rank == 0:
        print(f"final test accuracy {acc:.3f}; parameters identical on all {size} ranks: "
              f"{same}", flush=True)
    ringred.shutdown()
    if not same:
        raise SystemExit(1)
    if acc < args.min_accuracy:
        raise SystemExit(f"test accuracy {acc:.3f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    main()
