"""Fine-tuning: a training run that starts from a model file (``mlip-train --init-from``).

* The architecture (family and hyperparameters) and the weights come from the file;
  ``--model`` may only repeat its family or preset name, ``--params``/``--model-config``
  are refused.
* Elements of the new data that the source model was not trained on are added when its
  element embeddings have rows for them (``Z < max_num_elements``): each new row of every
  element embedding starts as a copy of the row of the known element nearest in atomic
  number (the lighter one on a tie), and so does its reference energy. Elements beyond the
  embeddings are refused, named.
* Reference energies are refitted to the new data: the least-squares per-element
  correction of the source model's energy errors on the training structures is added to
  the source's values. The per-atom scale and shift stay the source's.
* ``--freeze-except N`` trains only the last ``N`` units of the model, counted from the
  end of ``[block 0, ..., block L-1, head]`` (the head: every module after the blocks);
  the input embeddings stay frozen, except the element embeddings when elements were added.
* The exported model records its parent in ``train.parent`` (file name and sha256).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols
from torch import nn

from mlip_scaling import keys
from mlip_scaling.checkpoint import load_checkpoint, potential_from_dict
from mlip_scaling.data.atomic_data import AtomicData, collate
from mlip_scaling.errors import ConfigError, DataError
from mlip_scaling.io_utils import file_hash
from mlip_scaling.models import registry
from mlip_scaling.models.potential import Potential
from mlip_scaling.training.config import TrainConfig
from mlip_scaling.training.normalization import composition_matrix

__all__ = ["Parent", "load_parent", "check_model_option", "parent_model", "build_potential",
           "extend_elements", "refit_references", "freeze_except"]


@dataclass(frozen=True)
class Parent:
    """The model file a run starts from: its path, checkpoint dict and sha256."""

    path: Path
    ckpt: dict[str, Any]
    sha256: str

    @property
    def family(self) -> str:
        return self.ckpt["model"]["family"]

    def record(self) -> dict[str, str]:
        """``train.parent`` of the exported model."""
        return {"file": self.path.name, "sha256": self.sha256}


def load_parent(path: str | Path) -> Parent:
    """Read and validate the source model file (CheckpointError naming it when unusable)."""
    path = Path(path)
    return Parent(path, load_checkpoint(path), file_hash(path))


def check_model_option(model: str, parent: Parent) -> None:
    """Refuse a ``--model`` that names another architecture than the source file's."""
    family = parent.family
    preset = parent.ckpt.get("train", {}).get("model")
    if model not in (family, preset):
        raise ConfigError(f"--model {model} conflicts with --init-from {parent.path} (a "
                          f"{preset or family} model): drop --model")


def parent_model(cfg: TrainConfig, parent: Parent) -> tuple[str, str, dict]:
    """``(name, family, config)`` of the source model; conflicting options are refused."""
    if cfg.params is not None or cfg.model_config:
        raise ConfigError(f"--init-from {parent.path} fixes the architecture: drop --params "
                          "and --model-config")
    if cfg.model != TrainConfig.model:  # the default names no architecture here
        check_model_option(cfg.model, parent)
    family, config = parent.family, dict(parent.ckpt["model"]["config"])
    name = parent.ckpt.get("train", {}).get("model")
    if not isinstance(name, str):
        name = registry.size_name(family, config)
    return name, family, config


def _element_embeddings(model: nn.Module, size: int) -> list[nn.Embedding]:
    return [m for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings == size]


def extend_elements(potential: Potential, species: list[int], where: str) -> list[int]:
    """Add the elements of ``species`` the potential lacks (see the module notes);
    returns the added atomic numbers. DataError naming those beyond the embeddings."""
    known = list(potential.species)
    added = sorted(set(species) - set(known))
    size = int(potential.config.get("max_num_elements", 0))
    tables = _element_embeddings(potential.model, size)
    beyond = [z for z in added if z >= size or not tables]
    if beyond:
        names = ", ".join(chemical_symbols[z] for z in beyond)
        raise DataError(f"{where}: element(s) {names} are absent from the source model "
                        f"(trained on {', '.join(chemical_symbols[z] for z in known)}) and its "
                        f"element embeddings (max_num_elements={size}) cannot hold them")
    with torch.no_grad():
        for z in added:
            nearest = min(known, key=lambda k: (abs(k - z), k))
            for table in tables:
                table.weight[z] = table.weight[nearest]
            potential.reference_energies[z] = potential.reference_energies[nearest]
    potential.species = sorted(set(known) | set(added))
    return added


@torch.no_grad()
def refit_references(potential: Potential, train: list[AtomicData], batch_size: int,
                     device: torch.device) -> dict[int, float]:
    """Add to the reference energies the least-squares per-element correction of the
    potential's energy errors on ``train``; returns the corrections (eV)."""
    species = sorted({int(z) for d in train for z in d[keys.ATOMIC_NUMBERS].tolist()})
    model = potential.to(device).eval()
    predicted = []
    for start in range(0, len(train), batch_size):
        batch = collate(train[start:start + batch_size], device=device)
        out = model(batch, compute_forces=False, compute_stress=False)
        predicted.append(out[keys.ENERGY].double().cpu().numpy())
    labels = np.array([float(d[keys.ENERGY].reshape(-1)[0]) for d in train])
    counts = composition_matrix(train, species)
    delta, *_ = np.linalg.lstsq(counts, labels - np.concatenate(predicted), rcond=None)
    for z, d in zip(species, delta):
        potential.reference_energies[z] += float(d)
    potential.to("cpu")
    return {z: float(d) for z, d in zip(species, delta)}


def _units(model: nn.Module) -> tuple[list[str], list[list[nn.Module]]]:
    """Names and modules of ``[block 0, ..., block L-1, head]``."""
    children = list(model.named_children())
    lists = [k for k, (_, m) in enumerate(children) if isinstance(m, nn.ModuleList)]
    if len(lists) != 1:
        raise ConfigError(f"--freeze-except: the {type(model).__name__} model has no single "
                          "list of blocks to count from")
    name, blocks = children[lists[0]]
    head = children[lists[0] + 1:]
    names = [f"{name}.{k}" for k in range(len(blocks))]
    modules = [[block] for block in blocks]
    if head:
        names.append(f"head ({', '.join(n for n, _ in head)})")
        modules.append([m for _, m in head])
    return names, modules


def freeze_except(potential: Potential, n_units: int, keep_embeddings: bool) -> str:
    """Freeze every weight but those of the last ``n_units`` units (and of the element
    embeddings when ``keep_embeddings``); returns what stays trainable, in words."""
    names, modules = _units(potential.model)
    if n_units > len(names):
        raise ConfigError(f"--freeze-except {n_units} exceeds the {len(names)} blocks and "
                          f"heads of the model ({', '.join(names)})")
    potential.model.requires_grad_(False)
    for group in modules[len(names) - n_units:]:
        for module in group:
            module.requires_grad_(True)
    trainable = names[len(names) - n_units:]
    if keep_embeddings:
        size = int(potential.config.get("max_num_elements", 0))
        for table in _element_embeddings(potential.model, size):
            table.requires_grad_(True)
        trainable.append("element embeddings (new elements)")
    return ", ".join(trainable)


def build_potential(cfg: TrainConfig, parent: Parent, train: list[AtomicData],
                    val: list[AtomicData], device: torch.device, where: str,
                    show: bool) -> Potential:
    """The source potential adapted to the new data (elements, references, freezing)."""
    potential = potential_from_dict(parent.ckpt)
    species = sorted({int(z) for d in train + val for z in d[keys.ATOMIC_NUMBERS].tolist()})
    added = extend_elements(potential, species, where)
    shift = refit_references(potential, train, cfg.batch_size, device)
    if cfg.freeze_except is not None:
        trainable = freeze_except(potential, cfg.freeze_except, bool(added))
    else:
        trainable = "all weights"
    if show:
        n_train = sum(p.numel() for p in potential.model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in potential.model.parameters())
        new = ", ".join(chemical_symbols[z] for z in added) or "none"
        refs = ", ".join(f"{chemical_symbols[z]} {d:+.4g}" for z, d in shift.items())
        print(f"fine-tuning {parent.path} (sha256 {parent.sha256[:12]}): added elements "
              f"{new}; reference energies refitted (eV: {refs}); trainable: {trainable} "
              f"({n_train:,} of {n_all:,} weights)", file=sys.stderr, flush=True)
    return potential
