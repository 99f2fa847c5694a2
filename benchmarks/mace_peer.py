"""The from-scratch MACE peer of the speed benchmarks, timed in a mace-torch interpreter.

mace-torch pins e3nn 0.4.4, so MACE runs in its own venv (``MACE_PYTHON``, default
``/work/venvs/mace/bin/python``) as a subprocess of this file. The parent side
(:func:`run`, :func:`atoms_spec`) needs only the standard library; the child side
(``python mace_peer.py`` with a JSON spec on stdin) imports torch, e3nn and mace and
prints one ``RESULT {json}`` line.

Model: MACE with 2 interactions, ``{C}x0e+{C}x1o`` hidden irreps (``channels`` = C),
max_ell 3, correlation 3, r_max 5 Å, 8 Bessel functions, 16x0e readout MLP, random
weights (the 72,848-parameter model with C = 32 and one element). Spec keys:

- ``channels``: C; ``species``: atomic numbers (one MACE element each);
- ``threads``: torch CPU threads; ``repeats``: timed runs after one warm-up (median);
- ``clock``: ``"process"`` (CPU time of the process) or ``"wall"``;
- ``infer``: one structure (:func:`atoms_spec`) timed for energy + forces + stress in each
  of ``dtypes`` (``"float32"``, ``"float64"``);
- ``train`` (optional): structures of one batch timed for a float32 training step
  (forward with the graph kept, mean-square energy + force + stress loss, backward,
  AdamW step).

Result: ``{"params": int, "infer_ms": {dtype: ms}, "train_ms": ms or None}``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ase import Atoms

DEFAULT_PYTHON = "/work/venvs/mace/bin/python"


def mace_python() -> str:
    """The interpreter of the mace-torch venv: ``$MACE_PYTHON`` or the default path."""
    return os.environ.get("MACE_PYTHON", DEFAULT_PYTHON)


def atoms_spec(atoms: Atoms) -> dict:
    """JSON form of an ASE ``Atoms``: numbers, positions (Å), cell (Å), pbc."""
    return {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": atoms.pbc.tolist(),
    }


def run(python: str, spec: dict, timeout: float = 7200) -> dict | None:
    """Time MACE as ``spec`` says in ``python``'s subprocess; None (with a printed note)
    when the interpreter is absent, the run fails or takes over ``timeout`` s of wall clock."""
    if not os.path.exists(python):
        print(f"MACE skipped: no interpreter at {python} (set MACE_PYTHON to a mace-torch venv)")
        return None
    try:
        proc = subprocess.run(
            [python, str(Path(__file__).resolve())],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"MACE skipped: no result within {timeout:.0f} s (wall clock)")
        return None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"MACE skipped: subprocess failed ({tail})")
        return None
    return json.loads(lines[-1][len("RESULT ") :])


# ---- child side: runs in the mace-torch interpreter -------------------------------------


def median_ms(call, repeats: int, clock=time.perf_counter) -> float:
    """Median time (ms; wall clock unless ``clock`` says otherwise) of ``call`` over
    ``repeats`` runs after one warm-up run (also the package side's timer: bench_models)."""
    call()
    times = []
    for _ in range(repeats):
        start = clock()
        call()
        times.append(clock() - start)
    return 1e3 * statistics.median(times)


def _build(channels: int, species: list[int]):
    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules

    torch.manual_seed(0)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.MACE(
        r_max=5.0,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=3,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=2,
        num_elements=len(species),
        hidden_irreps=o3.Irreps(f"{channels}x0e+{channels}x1o"),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.full(len(species), -3.0),
        avg_num_neighbors=40.0,
        atomic_numbers=species,
        correlation=3,
        gate=torch.nn.functional.silu,
    )


def _batch(structures: list[dict], species: list[int]) -> dict:
    from ase import Atoms
    from mace import data, tools
    from mace.tools import torch_geometric

    z_table = tools.AtomicNumberTable(species)
    items = [
        data.AtomicData.from_config(data.config_from_atoms(Atoms(**s)), z_table=z_table, cutoff=5.0)
        for s in structures
    ]
    loader = torch_geometric.dataloader.DataLoader(items, batch_size=len(items))
    return next(iter(loader)).to_dict()


def _time_inference(spec: dict, dtype: str, clock) -> tuple[float, int]:
    """(ms of one energy + forces + stress call on ``spec["infer"]``, parameters)."""
    import torch

    torch.set_default_dtype(getattr(torch, dtype))  # MACE's own convention, own process
    model = _build(spec["channels"], spec["species"])
    batch = _batch([spec["infer"]], spec["species"])

    def call() -> dict:
        return model(dict(batch), compute_force=True, compute_stress=True, training=False)

    assert call()["forces"].shape == (len(spec["infer"]["numbers"]), 3)
    return median_ms(call, spec["repeats"], clock), sum(p.numel() for p in model.parameters())


def _time_train(spec: dict, clock) -> float:
    """ms of one float32 training step on the batch ``spec["train"]``."""
    import torch

    torch.set_default_dtype(torch.float32)
    model = _build(spec["channels"], spec["species"])
    batch = _batch(spec["train"], spec["species"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        res = model(dict(batch), compute_force=True, compute_stress=True, training=True)
        loss = (
            res["energy"].square().mean()
            + res["forces"].square().mean()
            + res["stress"].square().mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return median_ms(step, spec["repeats"], clock)


def _child(spec: dict) -> dict:
    import torch

    torch.serialization.add_safe_globals([slice])  # e3nn 0.4's shipped constants
    torch.set_num_threads(spec["threads"])
    clock = time.process_time if spec["clock"] == "process" else time.perf_counter
    out: dict = {"infer_ms": {}, "train_ms": None}
    for dtype in spec["dtypes"]:
        out["infer_ms"][dtype], out["params"] = _time_inference(spec, dtype, clock)
    if spec.get("train"):
        out["train_ms"] = _time_train(spec, clock)
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(_child(json.load(sys.stdin))), flush=True)
