"""fairchem-compatible EquiformerV2 options and the fairchem checkpoint importer.

The fixtures in tests/data/fairchem/ were made by benchmarks/make_fairchem_fixtures.py with
fairchem-core 1.10.0 (random weights, the package's edge frame injected, float64).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.stress import voigt_notation
from e3nn import o3

from mlip_scaling import ScalingCalculator
from mlip_scaling.checkpoint import CheckpointError, potential_from_dict
from mlip_scaling.models.equiformer_v2.fairchem_import import (
    FairchemFileError,
    convert_fairchem,
    import_fairchem,
)
from mlip_scaling.models.equiformer_v2.fairchem_pickle import read_fairchem_file
from mlip_scaling.models.equiformer_v2.heads import _fairchem_rank2_basis, _rank2_basis
from mlip_scaling.models.equiformer_v2.layer_norm import EquivariantLayerNormSH
from mlip_scaling.models.equiformer_v2.model import (
    EquiformerV2,
    _nearest_mask,
    _nearest_mask_with_ties,
)
from mlip_scaling.models.equiformer_v2.so3 import wigner_d_blocks
from mlip_scaling.scaling.cli import main as scaling_main

DATA = Path(__file__).parent / "data" / "fairchem"
TINY_CKPT = DATA / "tiny_fairchem.pt"
F64 = torch.float64


def test_layer_norm_sh_matches_its_definition_and_is_equivariant():
    torch.manual_seed(0)
    lmax, c = 3, 5
    norm = EquivariantLayerNormSH(lmax, c).double()
    with torch.no_grad():
        norm.norm_l0.weight.uniform_(0.5, 1.5)
        norm.norm_l0.bias.uniform_(-0.5, 0.5)
        norm.affine_weight.uniform_(0.5, 1.5)
    x = torch.randn(4, (lmax + 1) ** 2, c, dtype=F64)
    with torch.no_grad():
        _check_layer_norm_sh(norm, x, lmax, c)


def _check_layer_norm_sh(norm, x, lmax, c):
    out = norm(x)
    l0 = torch.nn.functional.layer_norm(x[:, 0], (c,), norm.norm_l0.weight, norm.norm_l0.bias)
    ms = sum(x[:, l * l:(l + 1) ** 2].pow(2).sum(1) / (2 * l + 1) for l in range(1, lmax + 1))
    scale = (ms.mean(1) / lmax + 1e-5).rsqrt()
    np.testing.assert_allclose(out[:, 0], l0, rtol=1e-12)
    for l in range(1, lmax + 1):
        want = x[:, l * l:(l + 1) ** 2] * scale[:, None, None] * norm.affine_weight[l - 1]
        np.testing.assert_allclose(out[:, l * l:(l + 1) ** 2], want, rtol=1e-12)
    rot = o3.rand_matrix(1, dtype=F64).expand(4, 3, 3)
    d = torch.block_diag(*[b[0] for b in wigner_d_blocks(rot, lmax)])
    np.testing.assert_allclose(norm(d @ x), d @ out, atol=1e-12)


def test_neighbour_cap_keeps_ties_within_fairchem_tolerance():
    # centre 0: squared lengths 1, 1, 1.000001 (tie of the 3rd), 1.004 (within 0.01 Å²), 2
    centre = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    lengths = torch.tensor([1.0, 1.0, 1.0000005, math.sqrt(1.004), math.sqrt(2.0), 3.0, 1.0],
                           dtype=F64)
    ties = _nearest_mask_with_ties(centre, lengths, 2, 2)
    strict = _nearest_mask(centre, lengths, 2, 2)
    assert ties.tolist() == [True, True, True, True, False, True, True]
    assert strict.tolist() == [True, True, False, False, False, True, True]


def test_envelope_off_gives_hard_cutoff_weights():
    model = EquiformerV2(4.0, 1, 4, 4, 2, 2, 2, 4, 2, 1, None, 8, 4, envelope=False)
    index = torch.tensor([[0, 1], [1, 0]])
    vectors = torch.tensor([[3.9, 0.1, 0.0], [-3.9, -0.1, 0.0]])
    edges = model.edge_context({"atomic_numbers": torch.tensor([1, 8]), "edge_index": index,
                                "edge_vectors": vectors})
    assert edges.envelope.tolist() == [1.0, 1.0]


def test_fairchem_rank2_basis_is_orthonormal_and_matches_l2_harmonics():
    basis = _fairchem_rank2_basis()
    gram = torch.einsum("aij,bij->ab", basis, basis)
    np.testing.assert_allclose(gram, torch.eye(6, dtype=F64), atol=1e-15)
    v = torch.nn.functional.normalize(torch.randn(7, 3, dtype=F64), dim=1)
    y2 = o3.spherical_harmonics(2, v, True, normalization="component")  # e3nn l=2 order
    tensor = torch.einsum("ek,kij->eij", y2, basis[1:])
    traceless = v[:, :, None] * v[:, None, :] - torch.eye(3, dtype=F64) / 3
    # |Y2|^2 = 5 and |vv^T - I/3|_F^2 = 2/3
    np.testing.assert_allclose(tensor, math.sqrt(7.5) * traceless, atol=1e-12)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="norm_type"):
        EquiformerV2(4.0, 1, 4, 4, 2, 2, 2, 4, 2, 1, None, 8, 4, norm_type="layer_norm")
    with pytest.raises(ValueError, match="stress_head"):
        EquiformerV2(4.0, 1, 4, 4, 2, 2, 2, 4, 2, 1, None, 8, 4, stress_head="other")


def _reference_structures() -> tuple[list[Atoms], dict]:
    ref = torch.load(DATA / "tiny_reference.pt", weights_only=True)
    atoms = [Atoms(numbers=z, positions=p.numpy(), cell=c.numpy(), pbc=True)
             for z, p, c in zip(ref["numbers"], ref["positions"], ref["cells"])]
    return atoms, ref


def test_imported_checkpoint_reproduces_fairchem_in_float64(tmp_path):
    out = tmp_path / "eqv2-tiny.pt"
    assert scaling_main(["import-fairchem", str(TINY_CKPT), "--out", str(out)]) == 0
    atoms, ref = _reference_structures()
    calc = ScalingCalculator(out, device="cpu", dtype="float64")
    results = calc.predict(atoms)
    energy = np.array([float(r["energy"]) for r in results])
    np.testing.assert_allclose(energy, ref["energy"].numpy(), rtol=1e-10)
    forces = np.concatenate([r["forces"] for r in results])
    scale = np.abs(ref["forces"].numpy()).max()
    np.testing.assert_allclose(forces, ref["forces"].numpy(), rtol=0, atol=1e-10 * scale)
    voigt = voigt_notation  # ASE's Voigt order of the 3x3 indices
    want = np.array([[s[i, j] for i, j in voigt] for s in ref["stress"].numpy()])
    got = np.array([r["stress"] for r in results])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max())
    basis = _fairchem_rank2_basis().numpy()  # both parts: projections on the basis
    full = np.array([[[r["stress"][voigt.index((min(i, j), max(i, j)))] for j in range(3)]
                      for i in range(3)] for r in results])
    parts = np.einsum("bij,kij->bk", full, basis)
    np.testing.assert_allclose(parts[:, 0], ref["stress_isotropic"].numpy(), rtol=1e-10)
    aniso = ref["stress_anisotropic"].numpy()
    np.testing.assert_allclose(parts[:, 1:], aniso, rtol=0, atol=1e-10 * np.abs(aniso).max())
    atoms[0].calc = calc
    assert atoms[0].get_potential_energy() == pytest.approx(ref["energy"][0].item(), rel=1e-10)


def test_import_uses_ema_weights_and_records_provenance():
    converted = import_fairchem(TINY_CKPT)
    assert converted["train"]["ema"] is True
    assert len(converted["train"]["source_sha256"]) == 64
    ckpt = read_fairchem_file(TINY_CKPT)
    ckpt.pop("ema")
    plain = convert_fairchem(ckpt)
    assert plain["train"]["ema"] is False
    name = "blocks.0.ga.alpha_dot"
    assert not torch.equal(plain["state_dict"][name], converted["state_dict"][name])
    np.testing.assert_allclose(plain["state_dict"][name],
                               ckpt["state_dict"]["module.backbone." + name], rtol=0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["config"]["model"]["backbone"].update(share_atom_edge_embedding=True),
         "share_atom_edge_embedding"),
        (lambda c: c["config"]["model"]["backbone"].update(use_gate_act=True), "use_gate_act"),
        (lambda c: c["config"]["model"]["backbone"].update(new_flag=1), "unknown backbone"),
        (lambda c: c["normalizers"]["energy"].update(mean=torch.tensor(0.5)),
         "per-structure energy mean"),
        (lambda c: c["config"]["model"]["heads"].pop("stress"), "heads"),
        (lambda c: c["ema"]["shadow_params"].pop(), "shadow_params"),
    ],
)
def test_importer_refuses_what_it_cannot_express(edit, message):
    ckpt = copy.deepcopy(read_fairchem_file(TINY_CKPT))
    edit(ckpt)
    with pytest.raises(FairchemFileError, match=message):
        convert_fairchem(ckpt, "x.pt")


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_fairchem_like_file_executes_nothing(tmp_path, capsys):
    marker = tmp_path / "executed"
    path = tmp_path / "hostile.pt"
    torch.save({"state_dict": {}, "config": {"model": {}}, "x": _Hostile(marker)}, path)
    with pytest.raises(FairchemFileError, match="refused global"):
        import_fairchem(path)
    with pytest.raises(SystemExit) as exc:
        scaling_main(["import-fairchem", str(path), "--out", str(tmp_path / "o.pt")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused global" in err
    with pytest.raises(CheckpointError):
        ScalingCalculator(path)
    assert not marker.exists()


def test_calculator_names_the_importer_for_a_fairchem_file():
    with pytest.raises(CheckpointError, match="import-fairchem") as exc:
        ScalingCalculator(TINY_CKPT)
    assert "\n" not in str(exc.value)


def test_in_memory_import_gives_a_potential():
    potential = potential_from_dict(import_fairchem(TINY_CKPT))
    assert potential.direct_forces and potential.model.stress_head.iso_rmsd > 0


@pytest.mark.parametrize(("size", "layers", "lmax", "mmax"),
                         [("S", 8, 4, 2), ("M", 10, 6, 4), ("L", 20, 6, 3)])
def test_omat24_presets_are_the_imported_omat24_function(size, layers, lmax, mmax):
    from mlip_scaling.models.equiformer_v2.fairchem_import import _backbone_config
    from mlip_scaling.models.equiformer_v2.presets import EQV2_PRESETS

    model_cfg = copy.deepcopy(read_fairchem_file(TINY_CKPT)["config"]["model"])
    model_cfg["backbone"].update(
        max_neighbors=20, max_radius=12.0, max_num_elements=96, num_layers=layers,
        sphere_channels=128, attn_hidden_channels=64, num_heads=8, attn_alpha_channels=64,
        attn_value_channels=16, ffn_hidden_channels=128, lmax_list=[lmax], mmax_list=[mmax],
        grid_resolution=18, edge_channels=128,
    )
    imported = _backbone_config("omat24.pt", model_cfg)
    preset = EQV2_PRESETS[f"eqv2-{size}"]
    assert imported == {k: v for k, v in preset.items() if k in imported}
    assert set(preset) - set(imported) <= {"alpha_drop", "drop_path_rate"}


def test_imported_model_in_torch_sim(tmp_path):
    ts = pytest.importorskip("torch_sim")
    from mlip_scaling.calculators.torchsim import ScalingTorchSimModel

    out = tmp_path / "eqv2-tiny.pt"
    torch.save(import_fairchem(TINY_CKPT), out)
    model = ScalingTorchSimModel(out, device="cpu", dtype="float64")
    atoms, ref = _reference_structures()
    result = model(ts.io.atoms_to_state(atoms, model.device, model.dtype))
    np.testing.assert_allclose(result["energy"].numpy(), ref["energy"].numpy(), rtol=1e-10)
    np.testing.assert_allclose(result["stress"].numpy(), ref["stress"].numpy(), rtol=0,
                               atol=1e-10 * ref["stress"].abs().max().item())


def test_imported_model_is_evaluated_next_to_package_models(tmp_path):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    rng = np.random.default_rng(0)
    structures = []
    for _ in range(20):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                  "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        structures.append(atoms)
    write(tmp_path / "cu.extxyz", structures)
    models = tmp_path / "models"
    models.mkdir()
    assert scaling_main(["import-fairchem", str(TINY_CKPT), "--out",
                         str(models / "eqv2-tiny.pt")]) == 0
    assert scaling_main(["evaluate", str(models), "--data", str(tmp_path / "cu.extxyz"),
                         "--no-downstream", "--quiet"]) == 0
    text = (models / "scaling_results.json").read_text()
    assert "eqv2-tiny.pt" in text and "energy_mae" in text


@pytest.mark.parametrize(("option", "value"), [
    ("max_neighbors_strict", True), ("max_neighbors", None), ("envelope", True),
    ("stress_head", "equivariant"), ("avg_degree", 23.395238876342773),
])
def test_each_fairchem_option_is_needed_to_reproduce_fairchem(option, value):
    converted = import_fairchem(TINY_CKPT)
    converted["model"]["config"][option] = value
    if option == "stress_head":
        converted["model"]["config"]["output_normalizers"] = {
            k: v for k, v in converted["model"]["config"]["output_normalizers"].items()
            if not k.startswith("stress")}
        converted["state_dict"]["stress_head.basis"] = _rank2_basis()
    calc = ScalingCalculator(potential_from_dict(converted), device="cpu", dtype="float64")
    atoms, ref = _reference_structures()
    results = calc.predict(atoms)
    forces = np.concatenate([r["forces"] for r in results])
    stress = np.array([r["stress"][:3] for r in results])
    want = np.array([np.diag(s) for s in ref["stress"].numpy()])
    worst = max(np.abs(forces - ref["forces"].numpy()).max() / np.abs(forces).max(),
                np.abs(stress - want).max() / np.abs(want).max())
    assert worst > 1e-6
