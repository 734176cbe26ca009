"""The training of examples/horovod_style.py written with ringred's own API: the final
parameters must be bit-identical to the Horovod-style script's."""

import hashlib
import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import ringred

EX = Path(__file__).resolve().parents[2] / "examples" / "horovod_style.py"
spec = importlib.util.spec_from_file_location("horovod_style", EX)
hs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hs)


def main() -> None:
    args = hs.parser.parse_args(sys.argv[1:])
    ringred.init()
    rank, size = ringred.rank(), ringred.size()
    torch.manual_seed(args.seed + rank)
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    target = torch.tensor(digits.target, dtype=torch.int64)
    train = TensorDataset(data[:1500], target[:1500])
    sampler = DistributedSampler(train, num_replicas=size, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)
    model = hs.Net()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr * size, momentum=args.momentum)
    ringred.broadcast_parameters(model.state_dict(), root_rank=0)
    ringred.broadcast_optimizer_state(opt, root_rank=0)
    opt = ringred.DistributedOptimizer(opt, named_parameters=model.named_parameters())
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
    digest = hashlib.sha1(b"".join(p.detach().numpy().tobytes()
                                   for p in model.parameters())).hexdigest()
    if rank == 0:
        print(f"parameters digest {digest}")
    ringred.shutdown()


if __name__ == "__main__":
    main()
