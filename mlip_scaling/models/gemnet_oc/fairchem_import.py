"""Convert fairchem-core 1.x GemNet-OC checkpoints (model ``gemnet_oc``) into
``mlip-scaling/1`` model files of the ``gemnet`` family that compute the same function.

Reached through :func:`mlip_scaling.models.equiformer_v2.fairchem_import.convert_fairchem`
(``mlip-scaling import-fairchem``), which reads files as data only. Converted: the model
settings (resolved with fairchem's defaults and cutoff/neighbour rules), the weights of
``state_dict`` (or the EMA ``shadow_params``, in fairchem's parameter order), the fitted
ScaleFactor values (in the state dict; 0 means 1), the energy and force normalisers (one
common rmsd, as the potential's ``scale``) and the element references. Refused, in one line
naming the file and the option: other radial/angular bases or envelopes, ``scale_basis``,
activations other than SiLU, ``use_pbc: False``, unknown settings, ``regress_forces:
False`` with direct forces, different energy and force rmsd, non-zero means.
"""

from __future__ import annotations

import torch

from mlip_scaling.checkpoint import FORMAT
from mlip_scaling.models.gemnet_oc.model import SIZES as MODEL_SIZES

__all__ = ["convert_gemnet", "is_gemnet_config"]

#: fairchem's defaults of the settings that are copied (GemNetOC.__init__)
_DEFAULTS = {
    "num_atom_emb_layers": 0,
    "num_global_out_layers": 2,
    "direct_forces": False,
    "cutoff": 6.0,
    "cutoff_qint": None,
    "cutoff_aeaint": None,
    "cutoff_aint": None,
    "max_neighbors": 50,
    "max_neighbors_qint": None,
    "max_neighbors_aeaint": None,
    "max_neighbors_aint": None,
    "enforce_max_neighbors_strictly": True,
    "extensive": True,
    "forces_coupled": False,
    "quad_interaction": False,
    "atom_edge_interaction": False,
    "edge_atom_interaction": False,
    "atom_interaction": False,
    "qint_tags": [0, 1, 2],
    "num_elements": 83,
    "sbf": {"name": "spherical_harmonics"},
    "envelope": {"name": "polynomial", "exponent": 5},
}
#: integer sizes of a fairchem config: the model's own and those it takes as arguments
_SIZES = ("num_spherical", "num_radial", "num_blocks", *MODEL_SIZES,
          "num_output_afteratom", "num_global_out_layers")
_IGNORED = {
    "name",
    "regress_forces",
    "use_pbc_single",
    "scale_backprop_forces",
    "otf_graph",
    "output_init",
    "scale_file",
}  # training-only or without effect on the function
_REQUIRED = {
    "use_pbc": True,
    "scale_basis": False,
    "rbf": {"name": "gaussian"},
    "cbf": {"name": "spherical_harmonics"},
}
_CHOICES = {
    "activation": ("silu", "swish"),
    "sbf": ({"name": "spherical_harmonics"}, {"name": "legendre_outer"}),
}
#: fairchem names that are not parameters with gradients (not in its EMA)
_NOT_IN_EMA = (".scale_factor", ".rbf.offset")


def is_gemnet_config(model_cfg: dict) -> bool:
    """True for a fairchem GemNet-OC model config (the plain or the hydra model)."""
    name = model_cfg.get("name")
    backbone = (model_cfg.get("backbone") or {}).get("model")
    return name in ("gemnet_oc", "gemnet_oc_backbone") or backbone == "gemnet_oc_backbone"


def _settings(fail, cfg: dict) -> dict:
    """fairchem's settings with its defaults filled in; refuses what cannot be expressed."""
    if cfg.get("name") != "gemnet_oc":
        raise fail(
            "the hydra GemNet-OC model (gemnet_oc_backbone) is not supported; "
            "only model 'gemnet_oc'"
        )
    known = (
        set(_DEFAULTS) | set(_SIZES) | _IGNORED | set(_REQUIRED) | set(_CHOICES) | {"rbf_spherical"}
    )
    for key, value in cfg.items():
        if key not in known:
            raise fail(f"unknown gemnet_oc setting {key!r}")
        if key in _REQUIRED and value != _REQUIRED[key]:
            raise fail(f"cannot express gemnet_oc setting {key}={value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise fail(f"cannot express gemnet_oc setting {key}={value!r}")
    if cfg.get("rbf_spherical") not in (None, {}, cfg.get("rbf", {"name": "gaussian"})):
        raise fail(f"cannot express gemnet_oc setting rbf_spherical={cfg['rbf_spherical']!r}")
    envelope = dict(cfg.get("envelope") or _DEFAULTS["envelope"])
    if envelope.pop("name", None) != "polynomial" or set(envelope) - {"exponent"}:
        raise fail(f"cannot express gemnet_oc setting envelope={cfg.get('envelope')!r}")
    if cfg.get("direct_forces") and cfg.get("regress_forces") is False:
        raise fail("cannot express gemnet_oc setting regress_forces=False with direct_forces")
    missing = [k for k in _SIZES if k not in cfg and k not in _DEFAULTS]
    if missing:
        raise fail(f"gemnet_oc config lacks {', '.join(missing)}")
    return {**_DEFAULTS, **cfg, "exponent": int(envelope.get("exponent", 5))}


def _resolve(s: dict) -> dict:
    """fairchem's ``set_cutoffs``/``set_max_neighbors``: the four cutoffs and caps."""
    ae = s["atom_edge_interaction"] or s["edge_atom_interaction"]
    cut, cap = float(s["cutoff"]), int(s["max_neighbors"])
    cut_ae = float(s["cutoff_aeaint"]) if ae and s["cutoff_aeaint"] is not None else cut
    cut_q = float(s["cutoff_qint"]) if s["quad_interaction"] and s["cutoff_qint"] else cut
    cut_a = (
        float(s["cutoff_aint"])
        if s["atom_interaction"] and s["cutoff_aint"]
        else max(cut, cut_ae, cut_q)
    )
    cap_ae = int(s["max_neighbors_aeaint"]) if ae and s["max_neighbors_aeaint"] else cap
    cap_q = (
        int(s["max_neighbors_qint"]) if s["quad_interaction"] and s["max_neighbors_qint"] else cap
    )
    cap_a = (
        int(s["max_neighbors_aint"])
        if s["atom_interaction"] and s["max_neighbors_aint"]
        else max(cap, cap_ae, cap_q)
    )
    return {
        "cutoff": cut_a,
        "cutoff_main": cut,
        "cutoff_qint": cut_q,
        "cutoff_aeaint": cut_ae,
        "max_neighbors": cap,
        "max_neighbors_qint": cap_q,
        "max_neighbors_aeaint": cap_ae,
        "max_neighbors_aint": cap_a,
    }


def gemnet_config(fail, model_cfg: dict) -> dict:
    """The package's ``gemnet`` config computing fairchem's ``gemnet_oc`` ``model_cfg``."""
    s = _settings(fail, model_cfg)
    config = {k: int(s[k]) for k in _SIZES}
    config.update(
        {
            k: bool(s[k])
            for k in (
                "quad_interaction",
                "atom_edge_interaction",
                "edge_atom_interaction",
                "atom_interaction",
                "extensive",
                "forces_coupled",
                "direct_forces",
            )
        }
    )
    config.update(_resolve(s))
    config.update(
        {
            "max_neighbors_strict": bool(s["enforce_max_neighbors_strictly"]),
            "sbf": s["sbf"]["name"],
            "envelope_exponent": s["exponent"],
            "quad_on_untagged": 0 in list(s["qint_tags"]),
            "num_elements": int(s["num_elements"]),
        }
    )
    return config


def _weights(
    fail, ckpt: dict, params: dict[str, torch.Tensor], buffers: set[str], weights: str
) -> dict[str, torch.Tensor]:
    """Package name -> tensor: parameters (state_dict or EMA) and ScaleFactor values."""
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    wanted = set(params) | buffers
    for name in sorted(wanted):
        if name not in state:
            raise fail(f"state_dict lacks {name}")
        want = params[name].shape if name in params else ()
        if tuple(state[name].shape) != tuple(want):
            raise fail(f"{name} has shape {tuple(state[name].shape)}, expected {tuple(want)}")
    mapped = {k: state[k] for k in wanted}
    if weights == "state_dict":
        return mapped
    shadow = (ckpt.get("ema") or {}).get("shadow_params") or []
    if not shadow:
        raise fail(
            "no EMA weights (ema.shadow_params): a file saved for inference holds "
            "them in state_dict already; import it without --weights ema"
        )
    order = [k for k in state if not k.endswith(_NOT_IN_EMA) and ".seq_energy_pre." not in k]
    if (
        sorted(order) != sorted(params)
        or any(tuple(s.shape) != tuple(state[k].shape) for s, k in zip(shadow, order))
        or len(shadow) != len(order)
    ):
        raise fail(
            f"ema shadow_params ({len(shadow)}) do not match the model's "
            f"{len(params)} parameters in order and shape"
        )
    mapped.update(zip(order, shadow))
    return mapped


def convert_gemnet(
    ckpt: dict, fail, normalizers: dict, references: dict[int, float], sha256: str, weights: str
) -> dict:
    """An ``mlip-scaling/1`` checkpoint dict computing fairchem GemNet-OC ``ckpt``.

    ``fail(message)`` makes the one-line error naming the file; ``normalizers`` and
    ``references`` are read by the EquiformerV2 importer's shared helpers.
    """
    from mlip_scaling.models.gemnet_oc.model import GemNetOC

    config = gemnet_config(fail, ckpt["config"]["model"])
    rmsd = {k: normalizers[k][0] for k in ("energy", "forces") if k in normalizers}
    if len(set(rmsd.values())) > 1:
        raise fail(f"cannot express different energy and force normaliser rmsd {rmsd}")
    with torch.device("cpu"):
        model = GemNetOC(**config)
    params = dict(model.named_parameters())
    buffers = {k for k, _ in model.named_buffers() if k.endswith(".scale_factor")}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state.update(
        {
            k: v.detach().clone().reshape(state[k].shape).to(state[k].dtype)
            for k, v in _weights(fail, ckpt, params, buffers, weights).items()
        }
    )
    species = [z for z, e in references.items() if e != 0.0] or list(
        range(1, config["num_elements"] + 1)
    )
    return {
        "format": FORMAT,
        "model": {"family": "gemnet", "config": config},
        "state_dict": state,
        "species": species,
        "cutoff": config["cutoff"],
        "reference_energies": references,
        "scale": float(next(iter(rmsd.values()), 1.0)),
        "shift": 0.0,
        "train": {
            "source": "fairchem",
            "source_sha256": sha256,
            "weights": weights,
            "n_params": sum(p.numel() for p in params.values()),
            "epochs": ckpt.get("epoch"),
            "steps": ckpt.get("step"),
        },
        "metrics": {},
    }
