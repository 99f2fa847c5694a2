"""fairchem-compatible EquiformerV2 options and the fairchem checkpoint importer.

The fixtures in tests/data/fairchem/ were made by benchmarks/make_fairchem_fixtures.py with
fairchem-core 1.10.0: both file layouts written by fairchem's own trainer (``save`` with and
without training state) and the outputs of fairchem's own ``OCPCalculator`` on each (random
weights, the package's edge frame injected, float64).
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
TRAINING = DATA / "tiny_training.pt"  # live weights in state_dict, EMA in ema.shadow_params
INFERENCE = DATA / "tiny_inference.pt"  # EMA copied into state_dict, no ema key
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
    np.testing.assert_allclose(edges.envelope.tolist(), [1.0, 1.0], rtol=1e-12)


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


def _reference_structures(layout: str = "training") -> tuple[list[Atoms], dict]:
    """The cells and what fairchem's ``OCPCalculator`` predicts from the ``layout`` file."""
    ref = torch.load(DATA / "tiny_reference.pt", weights_only=True)
    atoms = [Atoms(numbers=z, positions=p.numpy(), cell=c.numpy(), pbc=True)
             for z, p, c in zip(ref["numbers"], ref["positions"], ref["cells"])]
    return atoms, ref[layout]


def _predict(calc, atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energies [B], forces [N, 3] and 3x3 stresses [B, 3, 3] of ``calc`` on ``atoms``."""
    results = calc.predict(atoms)
    energy = np.array([float(r["energy"]) for r in results])
    forces = np.concatenate([r["forces"] for r in results])
    voigt = voigt_notation  # ASE's Voigt order of the 3x3 indices
    stress = np.array([[[r["stress"][voigt.index((min(i, j), max(i, j)))] for j in range(3)]
                        for i in range(3)] for r in results])
    return energy, forces, stress


def _assert_matches(got: tuple, ref: dict, rel: float = 1e-10) -> None:
    for value, key in zip(got, ("energy", "forces", "stress")):
        want = ref[key].numpy()
        np.testing.assert_allclose(value, want, rtol=0, atol=rel * np.abs(want).max(),
                                   err_msg=key)


@pytest.mark.parametrize(("source", "flags", "layout"), [
    (TRAINING, [], "training"),  # fairchem's calculator predicts with the live weights
    (TRAINING, ["--weights", "ema"], "inference"),  # the EMA = the file saved for inference
    (INFERENCE, [], "inference"),
])
def test_imported_checkpoint_reproduces_fairchems_calculator(tmp_path, source, flags, layout):
    out = tmp_path / "eqv2-tiny.pt"
    assert scaling_main(["import-fairchem", str(source), "--out", str(out), *flags]) == 0
    atoms, ref = _reference_structures(layout)
    calc = ScalingCalculator(out, device="cpu", dtype="float64")
    _assert_matches(_predict(calc, atoms), ref)
    parts = np.einsum("bij,kij->bk", ref["stress"].numpy(), _fairchem_rank2_basis().numpy())
    assert np.abs(parts[:, 1:]).max() > 0.02 * np.abs(parts[:, 0]).max()  # both parts count
    atoms[0].calc = calc
    assert atoms[0].get_potential_energy() == pytest.approx(ref["energy"][0].item(), rel=1e-10)


def test_live_and_ema_weights_are_different_functions():
    _, live = _reference_structures("training")
    _, ema = _reference_structures("inference")
    assert np.abs(live["energy"] - ema["energy"]).max() > 1e-3
    assert np.abs(live["forces"] - ema["forces"]).max() > 1e-2


def test_weights_choice_is_recorded_and_ema_needs_shadow_weights(tmp_path, capsys):
    plain, ema = import_fairchem(TRAINING), import_fairchem(TRAINING, weights="ema")
    assert plain["train"]["weights"] == "state_dict" and ema["train"]["weights"] == "ema"
    assert len(plain["train"]["source_sha256"]) == 64
    ckpt = read_fairchem_file(TRAINING)
    name = "blocks.0.ga.alpha_dot"
    torch.testing.assert_close(plain["state_dict"][name], ckpt["state_dict"]["backbone." + name],
                               rtol=1e-12, atol=0)
    assert (plain["state_dict"][name] - ema["state_dict"][name]).abs().max() > 1e-6
    out = tmp_path / "m.pt"
    assert scaling_main(["import-fairchem", str(TRAINING), "--out", str(out),
                         "--weights", "ema"]) == 0
    assert torch.load(out, weights_only=True)["train"]["weights"] == "ema"
    assert "weights: ema" in capsys.readouterr().out
    with pytest.raises(FairchemFileError, match="saved for inference"):
        import_fairchem(INFERENCE, weights="ema")


def test_distributed_module_prefix_is_removed():
    ckpt = read_fairchem_file(TRAINING)
    plain = convert_fairchem(copy.deepcopy(ckpt))
    ckpt["state_dict"] = {"module." + k: v for k, v in ckpt["state_dict"].items()}
    prefixed = convert_fairchem(ckpt)
    for name, tensor in plain["state_dict"].items():
        torch.testing.assert_close(tensor, prefixed["state_dict"][name], rtol=1e-12, atol=0,
                                   msg=name)


def test_anisotropic_stress_mean_is_expressed_exactly():
    ckpt = read_fairchem_file(TRAINING)
    atoms, _ = _reference_structures()
    base = _predict(ScalingCalculator(potential_from_dict(convert_fairchem(copy.deepcopy(ckpt))),
                                      device="cpu", dtype="float64"), atoms)[2]
    ckpt["normalizers"]["stress_anisotropic"]["mean"] = torch.tensor(0.03)
    shifted = _predict(ScalingCalculator(potential_from_dict(convert_fairchem(ckpt)),
                                         device="cpu", dtype="float64"), atoms)[2]
    # fairchem: anisotropic irreps = rmsd * output + mean, each of the 5 l=2 components
    want = 0.03 * _fairchem_rank2_basis().numpy()[1:].sum(0)
    np.testing.assert_allclose(shifted - base, np.broadcast_to(want, base.shape), atol=1e-12)


def test_raw_fine_tune_checkpoint_is_refused_with_the_conversion_step():
    ckpt = copy.deepcopy(read_fairchem_file(TRAINING))
    model = ckpt["config"]["model"]
    model.pop("backbone")
    model["finetune_config"] = {"starting_checkpoint": "eqV2_31M_omat.pt"}
    with pytest.raises(FairchemFileError) as exc:
        convert_fairchem(ckpt, "ft.pt")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("ft.pt: backbone None")
    assert "convert_hydra_to_release" in message and "--fine-tune-checkpoint" in message


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
    ckpt = copy.deepcopy(read_fairchem_file(TRAINING))
    edit(ckpt)
    with pytest.raises(FairchemFileError, match=message):
        convert_fairchem(ckpt, "x.pt", weights="ema")


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
        ScalingCalculator(TRAINING)
    assert "\n" not in str(exc.value)


def test_in_memory_import_gives_a_potential():
    potential = potential_from_dict(import_fairchem(TRAINING))
    assert potential.direct_forces and potential.model.stress_head.iso_rmsd > 0


@pytest.mark.parametrize(("size", "layers", "lmax", "mmax"),
                         [("S", 8, 4, 2), ("M", 10, 6, 4), ("L", 20, 6, 3)])
def test_omat24_presets_are_the_imported_omat24_function(size, layers, lmax, mmax):
    from mlip_scaling.models.equiformer_v2.fairchem_import import _backbone_config
    from mlip_scaling.models.equiformer_v2.presets import EQV2_PRESETS

    model_cfg = copy.deepcopy(read_fairchem_file(TRAINING)["config"]["model"])
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
    torch.save(import_fairchem(TRAINING), out)
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
    assert scaling_main(["import-fairchem", str(TRAINING), "--out",
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
    converted = import_fairchem(TRAINING)
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
