"""Fused S² activation of EquiformerV2: the compiled operators against the pure-torch path
(values, first and second derivatives, the full model's energy, forces and force-loss
gradient), and the pure-torch fallback when the extension is switched off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from ase.build import bulk

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import collate, from_atoms
from mlip_scaling.data.neighbors import NeighborListTransform
from mlip_scaling.models import registry
from mlip_scaling.models.equiformer_v2 import fused
from mlip_scaling.models.equiformer_v2.so3 import S2Grid
from mlip_scaling.models.potential import Potential

needs_ext = pytest.mark.skipif(not fused.available(), reason="no compiled fused kernels")


def _grid(lmax: int = 2, mmax: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    grid = S2Grid(lmax, mmax, None, m_primary=True).double()
    return grid.to_grid_mat, grid.from_grid_mat[:, 1:]


@needs_ext
@pytest.mark.parametrize("shape", [(2, 1), (3, 2)])
def test_fused_values_and_derivatives_match_pure_torch(shape):
    to_grid, from_grid = _grid(*shape)
    torch.manual_seed(0)
    x = torch.randn(7, to_grid.shape[1], 3, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(7, from_grid.shape[1], 3, dtype=torch.float64)
    results = []
    for enabled in (True, False):
        with fused.fused_kernels(enabled):
            y = fused.s2_activation(x, to_grid, from_grid)
            (gx,) = torch.autograd.grad(y, x, gy, create_graph=True)
            (ggx,) = torch.autograd.grad((gx.square() * x).sum(), x)
        results.append((y, gx, ggx))
    for got, want in zip(*results):
        assert torch.allclose(got, want, rtol=0, atol=1e-12 * want.abs().max().item())


@needs_ext
def test_fused_operator_passes_gradcheck_and_gradgradcheck():
    to_grid, from_grid = _grid()
    x = torch.randn(4, to_grid.shape[1], 2, dtype=torch.float64, requires_grad=True)

    def op(v: torch.Tensor) -> torch.Tensor:
        return torch.ops.mlip_scaling.s2_act(v, to_grid, from_grid)

    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


@needs_ext
def test_fused_operator_exports_with_its_shape():
    to_grid, from_grid = _grid()

    class Act(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return torch.ops.mlip_scaling.s2_act(v, to_grid, from_grid)

    x = torch.randn(5, to_grid.shape[1], 3, dtype=torch.float64)
    program = torch.export.export(Act(), (x,))
    assert torch.allclose(program.module()(x), Act()(x), rtol=0, atol=1e-14)


def _model_outputs(enabled: bool) -> list[torch.Tensor]:
    family, cfg = registry.get_preset("eqv2-1.5k")
    torch.manual_seed(0)
    potential = Potential(registry.build_model(family, cfg), family, cfg, species=[28, 29]).double()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.numbers[1] = 28
    atoms.rattle(0.1, seed=0)
    data = collate(
        [
            NeighborListTransform(potential.cutoff)(
                from_atoms(atoms, labels=False, dtype=torch.float64)
            )
        ]
    )
    with fused.fused_kernels(enabled):
        out = potential(data, create_graph=True)
        loss = out[keys.FORCES].square().sum()
        grads = torch.autograd.grad(
            loss, list(potential.parameters()), allow_unused=True, materialize_grads=True
        )
    return [out[keys.ENERGY], out[keys.FORCES], out[keys.STRESS], *grads]


@needs_ext
def test_model_energy_forces_and_force_loss_gradient_match_the_fallback():
    for got, want in zip(_model_outputs(True), _model_outputs(False), strict=True):
        scale = max(want.abs().max().item(), 1e-12)  # some gradients are ~1e-24: zero
        assert (got - want).abs().max().item() <= 1e-10 * scale


def test_package_runs_without_the_extension():
    """MLIP_SCALING_NO_EXT=1: the fallback is used, said in one log line, and gives the
    model's outputs."""
    script = (
        "import logging, torch\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from mlip_scaling.models.equiformer_v2 import fused\n"
        "assert not fused.available()\n"
        "g = fused.s2_activation(torch.ones(2, 3, 1), torch.ones(4, 3), torch.ones(4, 2))\n"
        "print(g.shape)\n"
    )
    env = {**os.environ, fused.DISABLE_ENV: "1"}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert "torch.Size([2, 2, 1])" in run.stdout
    lines = [line for line in run.stderr.splitlines() if "fused kernels" in line]
    assert lines == [f"EquiformerV2 fused kernels: pure torch ({fused.DISABLE_ENV} is set)"]
