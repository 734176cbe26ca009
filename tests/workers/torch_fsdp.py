"""FSDP2 (fully_shard) and FSDP1 FULL_SHARD on the "ringred" backend against gloo, and a
torch.distributed.checkpoint save / load on the ringred group."""

from __future__ import annotations

import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1
from torch.distributed.fsdp import ShardingStrategy, fully_shard

import ringred


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 31), nn.ReLU(),
                         nn.Linear(31, 5))


def _data(rank: int, steps: int) -> list:
    g = torch.Generator().manual_seed(50 + rank)
    return [(torch.randn(6, 12, generator=g), torch.randn(6, 5, generator=g))
            for _ in range(steps)]


def _fit(model: nn.Module, rank: int, steps: int = 3) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in _data(rank, steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _full(state: dict, group) -> dict:
    """Full tensors of a sharded (dim-0 DTensor) state dict, gathered through the group's
    own collectives: DTensor.full_tensor() goes through torch's functional collectives,
    which reach C++ backends only (see docs/torch-distributed.md)."""
    out = {}
    for k, v in state.items():
        parts = [None] * dist.get_world_size(group)
        dist.all_gather_object(parts, v.to_local().detach().clone(), group=group)
        out[k] = torch.cat(parts)
    return out


def _fsdp2(group) -> dict:
    model = _mlp()
    mesh = DeviceMesh.from_group(group, "cpu")
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    _fit(model, dist.get_rank())
    return _full(model.state_dict(), group)


def _fsdp1(group) -> dict:
    model = FSDP1(_mlp(), process_group=group, sharding_strategy=ShardingStrategy.FULL_SHARD,
                  use_orig_params=True, device_id=torch.device("cpu"))
    _fit(model, dist.get_rank())
    with FSDP1.summon_full_params(model):
        return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def _same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-6), (what, k, (a[k] - b[k]).abs().max())


def _checkpoint(group) -> None:
    """Save a sharded FSDP2 model with DCP on the ringred group, load it into a fresh one."""
    model = _mlp()
    mesh = DeviceMesh.from_group(group, "cpu")
    fully_shard(model, mesh=mesh)
    _fit(model, dist.get_rank(), steps=1)
    want = _full(model.state_dict(), group)
    path = ringred.broadcast_object(tempfile.mkdtemp(prefix="rr-dcp-") if
                                    dist.get_rank() == 0 else None, 0)
    dcp.save(model.state_dict(), checkpoint_id=path, process_group=group)
    fresh = nn.Sequential(*[nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 31), nn.ReLU(),
                            nn.Linear(31, 5)])
    fully_shard(fresh, mesh=mesh)
    sd = fresh.state_dict()
    dcp.load(sd, checkpoint_id=path, process_group=group)
    fresh.load_state_dict(sd)
    got = _full(fresh.state_dict(), group)
    for k in want:
        assert torch.equal(got[k], want[k]), ("dcp", k)


def run_fsdp() -> None:
    """FSDP2 and FSDP1 on ringred equal gloo; a DCP round trip on ringred."""
    gloo = dist.new_group(backend="gloo")
    world = dist.group.WORLD
    _same(_fsdp2(world), _fsdp2(gloo), "fully_shard")
    _same(_fsdp1(world), _fsdp1(gloo), "FSDP1 FULL_SHARD")
    _checkpoint(world)
