"""A Horovod PyTorch training script, written the way Horovod's documentation shows it.

It runs under ringred unchanged apart from its import line:

    import horovod.torch as hvd    ->    import ringred.torch as hvd

    mpirun -np 2 python examples/horovod_style.py

Data: scikit-learn's bundled "digits" set (no download).  A DistributedSampler splits it
across ranks, DistributedOptimizer averages gradients, broadcast_parameters and
broadcast_optimizer_state give every rank rank 0's starting point.
"""

import argparse
import hashlib

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import ringred.torch as hvd

parser = argparse.ArgumentParser(description="Horovod-style PyTorch digits example")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--momentum", type=float, default=0.5)
parser.add_argument("--fp16-allreduce", action="store_true", default=False)
parser.add_argument("--log-interval", type=int, default=10)
parser.add_argument("--seed", type=int, default=42)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x.view(-1, 64)))
        return F.log_softmax(self.fc2(x), dim=1)


def metric_average(val, name):
    tensor = torch.tensor(val)
    avg_tensor = hvd.allreduce(tensor, name=name)
    return avg_tensor.item()


def main():
    args = parser.parse_args()

    # Initialize Horovod
    hvd.init()
    torch.manual_seed(args.seed + hvd.rank())  # deliberately different initial weights
    torch.set_num_threads(1)

    digits = load_digits()
    data = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    target = torch.tensor(digits.target, dtype=torch.int64)
    train_dataset = TensorDataset(data[:1500], target[:1500])
    test_dataset = TensorDataset(data[1500:], target[1500:])

    # Partition dataset among workers using DistributedSampler
    train_sampler = DistributedSampler(train_dataset, num_replicas=hvd.size(), rank=hvd.rank(),
                                       shuffle=True, seed=args.seed)
    train_loader = DataLoader(train_dataset, batch_size=args.batch_size, sampler=train_sampler)
    test_sampler = DistributedSampler(test_dataset, num_replicas=hvd.size(), rank=hvd.rank(),
                                      shuffle=False)
    test_loader = DataLoader(test_dataset, batch_size=args.batch_size, sampler=test_sampler)

    model = Net()

    # Horovod: scale learning rate by the number of GPUs.
    optimizer = optim.SGD(model.parameters(), lr=args.lr * hvd.size(), momentum=args.momentum)

    # Horovod: broadcast parameters & optimizer state.
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    # Horovod: (optional) compression algorithm.
    compression = hvd.Compression.fp16 if args.fp16_allreduce else hvd.Compression.none

    # Horovod: wrap optimizer with DistributedOptimizer.
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters(),
                                         compression=compression)

    for epoch in range(1, args.epochs + 1):
        model.train()
        # Horovod: set epoch to sampler for shuffling.
        train_sampler.set_epoch(epoch)
        for batch_idx, (x, y) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            optimizer.step()
            if batch_idx % args.log_interval == 0 and hvd.rank() == 0:
                print(f"Train Epoch: {epoch} [{batch_idx * len(x)}/{len(train_sampler)}]"
                      f"\tLoss: {loss.item():.6f}")

        model.eval()
        test_loss, test_accuracy = 0.0, 0.0
        with torch.no_grad():
            for x, y in test_loader:
                output = model(x)
                test_loss += F.nll_loss(output, y, reduction="sum").item()
                test_accuracy += output.argmax(1).eq(y).float().sum().item()
        test_loss = metric_average(test_loss / len(test_sampler), "avg_loss")
        test_accuracy = metric_average(test_accuracy / len(test_sampler), "avg_accuracy")
        if hvd.rank() == 0:
            print(f"Test set: Average loss: {test_loss:.4f}, Accuracy: {100 * test_accuracy:.1f}%")

    digest = hashlib.sha1(b"".join(p.detach().numpy().tobytes()
                                   for p in model.parameters())).hexdigest()
    digests = hvd.allgather_object(digest)
    if hvd.rank() == 0:
        print(f"parameters digest {digest} identical on all ranks: {len(set(digests)) == 1}")


if __name__ == "__main__":
    main()
