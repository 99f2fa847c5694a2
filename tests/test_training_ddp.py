"""DDP: two gloo processes on CPU match one process at the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_training_helpers import final_weights, make_trainer, prepared

from mlip_scaling.training.distributed import init_distributed, shutdown

STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info, device = init_distributed("cpu")
    try:
        trainer = make_trainer(Path(out), prepared(16), prepared(4, seed=1), dist=info,
                               max_steps=STEPS, epochs=10, save_every=100)
        trainer.prepare(resume=False)
        trainer.fit()
        if info.is_main:
            torch.save({**final_weights(trainer), "flops": torch.tensor(trainer.flops),
                        "val": torch.tensor(trainer.last_val["force_mae"])},
                       Path(out) / "ddp.pt")
    finally:
        shutdown(info)


def test_two_gloo_processes_match_one(tmp_path):
    ddp_dir, one_dir = tmp_path / "ddp", tmp_path / "one"
    mp.spawn(_worker, args=(2, _free_port(), str(ddp_dir)), nprocs=2, join=True)
    two = torch.load(ddp_dir / "ddp.pt", weights_only=True)
    trainer = make_trainer(one_dir, prepared(16), prepared(4, seed=1), max_steps=STEPS,
                           epochs=10, save_every=100)
    trainer.prepare(resume=False)
    trainer.fit()
    one = final_weights(trainer)
    start = make_trainer(tmp_path / "init", prepared(4), prepared(2, seed=1))
    moved = 0.0
    for name, value in one.items():
        assert torch.allclose(two[name], value, rtol=1e-4, atol=1e-5), name
        init = start.potential.state_dict().get(name[2:])
        if name.startswith("w.") and init is not None and init.is_floating_point():
            moved = max(moved, float((value - init).abs().max()))
    assert moved > 1e-3  # training changed the weights: the comparison is not vacuous
    assert abs(float(two["val"]) - trainer.last_val["force_mae"]) < 1e-4
    # each rank counts its own (half) batches: the FLOP models differ only by their fits
    assert float(two["flops"]) == pytest.approx(trainer.flops, rel=0.05)
    assert (ddp_dir / "last.pt").exists() and (ddp_dir / "metrics.jsonl").exists()
