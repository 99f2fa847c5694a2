"""Convert fairchem-core 1.x EquiformerV2 checkpoints (the OMat24 models) into
self-describing ``mlip-scaling/1`` model files that compute the same function (GemNet-OC
checkpoints are handed to :mod:`mlip_scaling.models.gemnet_oc.fairchem_import`).

What is converted: the hydra model's ``equiformer_v2_backbone`` with the scalar energy,
vector force and rank-2 (decomposed) stress heads; the weights in ``state_dict``
(``module.`` prefix removed) by default, which is what fairchem's ``OCPCalculator``
predicts with on every file layout (it loads without an EMA object), or with
``weights="ema"`` the EMA ``shadow_params`` that a file saved with training state holds
(a file saved for inference has the EMA already copied into ``state_dict``); the
normalisers, as the model's ``output_normalizers`` (the isotropic and anisotropic stress
means included, expressed exactly); ``elementrefs`` (energy) as reference energies.
Anything that cannot be expressed exactly is refused with one line: an unknown or
unsupported backbone flag (``share_atom_edge_embedding``, ``use_m_share_rad``,
``use_gate_act``, ``use_s2_act_attn``, ...), other heads (a raw fine-tune checkpoint names
no backbone: convert it with fairchem's release step first), a non-zero per-structure
energy mean or force mean.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from mlip_scaling.checkpoint import FORMAT
from mlip_scaling.models.equiformer_v2.config import AVG_DEGREE, AVG_NUM_NODES
from mlip_scaling.models.equiformer_v2.fairchem_pickle import (
    FairchemFileError,
    is_fairchem_checkpoint,
    read_fairchem_file,
)
from mlip_scaling.models.equiformer_v2.model import EquiformerV2
from mlip_scaling.models.equiformer_v2.presets import FAIRCHEM_FUNCTION
from mlip_scaling.models.gemnet_oc.fairchem_import import convert_gemnet, is_gemnet_config

__all__ = [
    "FairchemFileError",
    "WEIGHTS",
    "convert_fairchem",
    "import_fairchem",
    "is_fairchem_checkpoint",
]

#: ``weights`` choices: what fairchem's calculator predicts with, or the EMA shadow weights
WEIGHTS = ("state_dict", "ema")

#: backbone keys -> the value fairchem's function needs (None: any value is expressed)
_REQUIRED = {
    "use_pbc": True,
    "use_atom_edge_embedding": True,
    "share_atom_edge_embedding": False,
    "use_m_share_rad": False,
    "distance_function": "gaussian",
    "use_s2_act_attn": False,
    "use_attn_renorm": True,
    "use_gate_act": False,
    "use_grid_mlp": True,
    "use_sep_s2_act": True,
    "use_energy_lin_ref": False,
    "load_energy_lin_ref": False,
}
_IGNORED = {  # training-only or without effect on the function
    "model", "use_pbc_single", "regress_forces", "otf_graph", "num_sphere_samples",
    "num_distance_basis", "attn_activation", "ffn_activation", "alpha_drop",
    "drop_path_rate", "proj_drop", "weight_init", "activation_checkpoint",
}
_COPIED = {
    "max_radius", "max_neighbors", "max_num_elements", "num_layers", "sphere_channels",
    "attn_hidden_channels", "num_heads", "attn_alpha_channels", "attn_value_channels",
    "ffn_hidden_channels", "norm_type", "lmax_list", "mmax_list", "grid_resolution",
    "edge_channels", "enforce_max_neighbors_strictly", "avg_num_nodes", "avg_degree",
}
_HEADS = {
    "energy": ("equiformer_v2_energy_head", "equiformerV2_scalar_head"),
    "forces": ("equiformer_v2_force_head", "equiformerV2_vector_head"),
    "stress": ("rank2_symmetric_head",),
}
_STRESS_HEAD = {"output_name": "stress", "use_source_target_embedding": True,
                "decompose": True, "edge_level_mlp": False, "num_mlp_layers": 2,
                "extensive": False}


_FINETUNE_HINT = ("; a fine-tune checkpoint names its starting checkpoint instead: make it a "
                  "release checkpoint with fairchem first (python -m fairchem.core.scripts."
                  "convert_hydra_to_release --fine-tune-checkpoint FILE "
                  "--output-release-checkpoint RELEASE.pt) and import RELEASE.pt")


def _fail(where: str, message: str) -> FairchemFileError:
    return FairchemFileError(f"{where}: {message}")


def _backbone_config(where: str, model_cfg: dict) -> dict:
    """The package's EquiformerV2 config that computes fairchem's backbone + heads."""
    if model_cfg.get("name") != "hydra":
        raise _fail(where, f"model {model_cfg.get('name')!r} is not a fairchem hydra model")
    bb = model_cfg.get("backbone") or {}
    if bb.get("model") not in ("equiformer_v2_backbone", "equiformer_v2"):
        raise _fail(where, f"backbone {bb.get('model')!r} is not equiformer_v2_backbone"
                    + _FINETUNE_HINT * ("finetune_config" in model_cfg))
    for key, value in bb.items():
        if key in _REQUIRED and value != _REQUIRED[key]:
            raise _fail(where, f"cannot express backbone setting {key}={value!r}")
        if key not in _REQUIRED and key not in _IGNORED and key not in _COPIED:
            raise _fail(where, f"unknown backbone setting {key!r}")
    _check_heads(where, model_cfg.get("heads") or {})
    lmax, mmax = bb.get("lmax_list", [6]), bb.get("mmax_list", [2])
    if len(lmax) != 1 or len(mmax) != 1:
        raise _fail(where, "only one resolution (lmax_list/mmax_list of length 1) is supported")
    norm = bb.get("norm_type", "rms_norm_sh")
    if norm not in ("rms_norm_sh", "layer_norm_sh"):
        raise _fail(where, f"cannot express norm_type {norm!r}")
    return {
        "cutoff": float(bb.get("max_radius", 5.0)),
        "num_layers": int(bb.get("num_layers", 12)),
        "sphere_channels": int(bb.get("sphere_channels", 128)),
        "attn_hidden_channels": int(bb.get("attn_hidden_channels", 128)),
        "num_heads": int(bb.get("num_heads", 8)),
        "attn_alpha_channels": int(bb.get("attn_alpha_channels", 32)),
        "attn_value_channels": int(bb.get("attn_value_channels", 16)),
        "ffn_hidden_channels": int(bb.get("ffn_hidden_channels", 512)),
        "lmax": int(lmax[0]),
        "mmax": int(mmax[0]),
        "grid_resolution": bb.get("grid_resolution"),
        "edge_channels": int(bb.get("edge_channels", 128)),
        "max_num_elements": int(bb.get("max_num_elements", 90)),
        "max_neighbors": int(bb.get("max_neighbors", 500)),
        "max_neighbors_strict": bool(bb.get("enforce_max_neighbors_strictly", True)),
        "norm_type": norm,
        "avg_num_nodes": float(bb.get("avg_num_nodes") or AVG_NUM_NODES),  # fairchem defaults
        "avg_degree": float(bb.get("avg_degree") or AVG_DEGREE),
        **FAIRCHEM_FUNCTION,  # 600 Gaussians: fairchem's count, whatever the config says
    }


def _check_heads(where: str, heads: dict) -> None:
    if set(heads) != set(_HEADS):
        raise _fail(where, f"heads {sorted(heads)} are not exactly energy, forces, stress")
    for name, modules in _HEADS.items():
        head = dict(heads[name])
        if head.pop("module", None) not in modules:
            raise _fail(where, f"head {name!r} is not one of {modules}")
        if name == "energy" and head.pop("reduce", "sum") != "sum":
            raise _fail(where, "energy head with reduce other than 'sum'")
        if name == "stress":
            head.pop("avg_num_nodes", None)  # used only by extensive heads
            head.pop("default_norm_type", None)  # the backbone's norm_type wins
            unknown = {k: v for k, v in {**_STRESS_HEAD, **head}.items()
                       if _STRESS_HEAD.get(k, object()) != v}
            if unknown:
                raise _fail(where, f"cannot express stress head settings {unknown}")
        elif head:
            raise _fail(where, f"unknown settings of head {name!r}: {sorted(head)}")


_PREFIXES = (
    ("backbone.", ""),
    ("output_heads.energy.", "energy_head."),
    ("output_heads.forces.", "force_head."),
    ("output_heads.stress.block.scalar_MLP.", "stress_head.scalar_mlp."),
    ("output_heads.stress.block.irrep2_MLP.", "stress_head.irrep2_mlp."),
    ("output_heads.stress.", "stress_head."),
)


def _package_name(name: str) -> str:
    """fairchem state-dict name (``module.`` removed) -> the package's name."""
    for old, new in _PREFIXES:
        if name.startswith(old):
            name = new + name[len(old):]
            break
    return name.replace(".rad_func.net.", ".rad_func.")


def _weights(where: str, ckpt: dict, params: dict[str, torch.Tensor],
             weights: str) -> dict[str, torch.Tensor]:
    """Package parameter name -> fairchem tensor: ``state_dict`` (``weights="state_dict"``)
    or the EMA ``shadow_params`` in parameter order (``weights="ema"``)."""
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    mapped = {}
    for name, tensor in state.items():
        new = _package_name(name)
        if new in params:
            if tuple(tensor.shape) != tuple(params[new].shape):
                raise _fail(where, f"{name} has shape {tuple(tensor.shape)}, expected "
                                   f"{tuple(params[new].shape)}")
            mapped[new] = tensor
    missing = sorted(set(params) - set(mapped))
    if missing:
        raise _fail(where, f"state_dict lacks {len(missing)} weights, e.g. {missing[0]}")
    if weights == "state_dict":
        return mapped
    if weights != "ema":
        raise _fail(where, f"weights {weights!r} is not one of {WEIGHTS}")
    shadow = (ckpt.get("ema") or {}).get("shadow_params") or []
    if not shadow:
        raise _fail(where, "no EMA weights (ema.shadow_params): a file saved for inference "
                           "holds them in state_dict already; import it without --weights ema")
    if len(shadow) != len(mapped) or any(
        tuple(s.shape) != tuple(t.shape) for s, t in zip(shadow, mapped.values())
    ):
        raise _fail(where, f"ema shadow_params ({len(shadow)}) do not match the model's "
                           f"{len(mapped)} parameters in order and shape")
    return dict(zip(mapped, shadow))


def _normalizers(where: str, ckpt: dict) -> dict[str, list[float]]:
    """fairchem's normalisers as the model's ``output_normalizers`` ([rmsd, mean...])."""
    out = {}
    for key, means in (("energy", 0), ("forces", 0), ("stress_isotropic", 1),
                       ("stress_anisotropic", 5)):
        norm = (ckpt.get("normalizers") or {}).get(key)
        if not norm:
            continue
        try:
            rmsd = float(torch.as_tensor(norm.get("rmsd", norm.get("std", 1.0))).reshape(-1)[0])
            mean = torch.as_tensor(norm.get("mean", 0.0), dtype=torch.float64).reshape(-1)
        except (TypeError, ValueError, RuntimeError, IndexError):
            raise _fail(where, f"normalizer {key!r} is not a mean/rmsd pair") from None
        if means == 0 and bool((mean != 0).any()):
            what = "per-structure energy" if key == "energy" else "force"
            raise _fail(where, f"cannot express a non-zero {what} mean {mean.tolist()}")
        if means and len(mean) not in (1, means):
            raise _fail(where, f"normalizer {key!r} has {len(mean)} means")
        out[key] = [rmsd] + ([float(m) for m in mean] if means else [])
    return out


def _references(where: str, ckpt: dict, max_z: int) -> dict[int, float]:
    refs = (ckpt.get("elementrefs") or {}).get("energy")
    if not refs:
        return {}
    table = refs.get("element_references") if isinstance(refs, dict) else None
    if not isinstance(table, torch.Tensor) or table.dim() != 1:
        raise _fail(where, "elementrefs['energy'] lacks an element_references vector")
    return {z: float(table[z]) for z in range(1, min(len(table), max_z))}


def convert_fairchem(ckpt: dict, where: str = "fairchem checkpoint", sha256: str = "",
                     weights: str = "state_dict") -> dict:
    """An ``mlip-scaling/1`` checkpoint dict computing the function of fairchem's ``ckpt``.

    ``where`` names the source in error messages; ``sha256`` and ``weights`` (one of
    :data:`WEIGHTS`: fairchem's calculator's ``state_dict``, or the ``ema`` shadow
    weights) are recorded as provenance. Species: the elements with a non-zero energy
    reference (all ``1..max_num_elements-1`` when the checkpoint has no element references).
    """
    if not is_fairchem_checkpoint(ckpt):
        raise _fail(where, "not a fairchem checkpoint (no state_dict and config.model)")
    if weights not in WEIGHTS:
        raise _fail(where, f"weights {weights!r} is not one of {WEIGHTS}")
    model_cfg = ckpt["config"]["model"]
    if isinstance(model_cfg, dict) and is_gemnet_config(model_cfg):
        max_z = int(model_cfg.get("num_elements", 83)) + 1
        return convert_gemnet(ckpt, lambda message: _fail(where, message),
                              _normalizers(where, ckpt), _references(where, ckpt, max_z),
                              sha256, weights)
    config = _backbone_config(where, ckpt["config"]["model"])
    config["output_normalizers"] = _normalizers(where, ckpt)
    with torch.device("cpu"):
        model = EquiformerV2(**config)
    params = dict(model.named_parameters())
    chosen = _weights(where, ckpt, params, weights)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state.update({k: v.detach().clone() for k, v in chosen.items()})
    refs = _references(where, ckpt, config["max_num_elements"])
    species = [z for z, e in refs.items() if e != 0.0] or list(range(1, config["max_num_elements"]))
    return {
        "format": FORMAT,
        "model": {"family": "eqv2", "config": config},
        "state_dict": state,
        "species": species,
        "cutoff": config["cutoff"],
        "reference_energies": refs,
        "scale": 1.0,
        "shift": 0.0,
        "train": {"source": "fairchem", "source_sha256": sha256, "weights": weights,
                  "n_params": sum(p.numel() for p in params.values()),
                  "epochs": ckpt.get("epoch"), "steps": ckpt.get("step")},
        "metrics": {},
    }


def import_fairchem(path: str | os.PathLike, weights: str = "state_dict") -> dict:
    """Read fairchem checkpoint ``path`` safely and convert it (see :func:`convert_fairchem`);
    the metadata records the file name, its SHA-256 and which ``weights`` were taken."""
    path = Path(path)
    ckpt = read_fairchem_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    out = convert_fairchem(ckpt, str(path), digest.hexdigest(), weights)
    out["train"]["source_file"] = path.name
    return out

