"""FLOP accounting of real training steps.

A training step = forward (energy), the force/stress backward (``create_graph=True``) and
the parameter backward. Two counts are taken on a few sample steps:

* matmul FLOP: the formulas of :class:`torch.utils.flop_counter.FlopCounterMode` (matmul,
  convolution and attention kernels only; the paper's convention), applied by
  :class:`FlopCounter` without FlopCounterMode's module tracker (whose backward hooks fail
  on a step whose energy does not depend on positions, e.g. a batch without edges);
* total FLOP: matmul FLOP plus elementwise work counted by :class:`FlopCounter`:
  1 FLOP per output element of every pointwise aten op (add, mul, silu, exp, where, ... and
  the bias add of ``addmm``), 1 per input element of reductions, softmaxes and scatter/index
  additions; pure data movement (views, copies, gathers, concatenation) counts 0.

The compute axis uses the total (the checkpoint's ``train.flops``; ``train.flops_matmul``
holds the matmul-only count). A non-negative linear model per count in the batch's atoms,
edges and atom pairs (``Σ_b n_b²``, for models with attention over all atoms of a
structure) then predicts every step actually taken. 1 PF-day = 8.64e19 FLOP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from mlip_scaling import keys
from mlip_scaling.data.atomic_data import AtomicData

__all__ = ["PF_DAY", "FLOPS_COUNTING", "batch_features", "count_flops", "count_flop_kinds",
           "FlopCounter", "FlopModel", "pf_days"]

PF_DAY = 8.64e19  # FLOP in one petaFLOP/s-day
FLOPS_COUNTING = ("flops: matmul + elementwise FLOP (the compute axis); flops_matmul: "
                  "matmul/convolution/attention FLOP only (FlopCounterMode)")
_aten = torch.ops.aten
_BIAS_ADDS = {_aten.addmm, _aten.baddbmm}  # matmul kernels with an elementwise add
_REDUCING = {_aten.sum, _aten.mean, _aten.amax, _aten.amin, _aten.max, _aten.min, _aten.prod,
             _aten.norm, _aten.linalg_vector_norm, _aten.var, _aten.std, _aten.logsumexp,
             _aten._softmax, _aten._log_softmax, _aten._softmax_backward_data,
             _aten._log_softmax_backward_data, _aten.cumsum}
_SCATTERING = {_aten.index_add: 3, _aten.index_add_: 3, _aten.scatter_add: 3,
               _aten.scatter_add_: 3, _aten.scatter_reduce: 3, _aten.scatter_reduce_: 3,
               _aten.index_put: 2, _aten.index_put_: 2, _aten._index_put_impl_: 2,
               _aten.embedding_dense_backward: 0}  # op -> argument whose elements are added


def pf_days(flops: float) -> float:
    """FLOPs expressed in PF-days."""
    return float(flops) / PF_DAY


def batch_features(batch: AtomicData) -> np.ndarray:
    """[atoms, edges, atom pairs] of a collated batch (the FLOP model's inputs)."""
    n = batch[keys.NUM_ATOMS].double()
    edges = batch[keys.EDGE_INDEX].shape[1] if keys.EDGE_INDEX in batch else 0
    return np.array([float(n.sum()), float(edges), float((n * n).sum())])


def _numel(value: object) -> int:
    return sum(t.numel() for t in tree_leaves(value) if isinstance(t, torch.Tensor))


class FlopCounter(TorchDispatchMode):
    """Counts the matmul FLOPs (``matmul``) and elementwise FLOPs (``flops``) of the aten
    ops run inside it (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0
        self.matmul = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        if packet in flop_registry:  # matmul-type work, as FlopCounterMode counts it
            self.matmul += int(flop_registry[packet](*args, **kwargs, out_val=out))
        if packet in _BIAS_ADDS:
            self.flops += _numel(out)
        elif packet in flop_registry:
            pass
        elif torch.Tag.pointwise in func.tags:
            self.flops += _numel(out)
        elif packet in _REDUCING:
            self.flops += _numel(args[0])
        elif packet in _SCATTERING:
            index = _SCATTERING[packet]
            self.flops += _numel(args[index]) if len(args) > index else 0
        return out


def count_flop_kinds(step: Callable[[AtomicData], object], batch: AtomicData) -> tuple[int, int]:
    """(matmul FLOP, total FLOP) while ``step(batch)`` runs (one training step)."""
    with FlopCounter() as counter:
        step(batch)
    return counter.matmul, counter.matmul + counter.flops


def count_flops(step: Callable[[AtomicData], object], batch: AtomicData) -> int:
    """Total FLOP (matmul + elementwise) while ``step(batch)`` runs (one training step)."""
    return count_flop_kinds(step, batch)[1]


class FlopModel:
    """``flops ≈ c0 + c_atoms·atoms + c_edges·edges + c_pairs·pairs`` with ``c ≥ 0``."""

    def __init__(self, coef: Sequence[float] = (0.0, 0.0, 0.0, 0.0)) -> None:
        self.coef = np.asarray(coef, dtype=np.float64)

    @classmethod
    def fit(cls, features: Sequence[np.ndarray], flops: Sequence[float]) -> FlopModel:
        """Non-negative least squares on relative errors of the sample steps."""
        from scipy.optimize import nnls

        x = np.column_stack([np.ones(len(features)), np.asarray(features, dtype=np.float64)])
        y = np.asarray(flops, dtype=np.float64)
        weight = 1.0 / np.maximum(y, 1.0)  # relative error: small batches count as much
        col = np.maximum(np.abs(x).max(axis=0), 1.0)  # column scaling for conditioning
        coef, _ = nnls(x * weight[:, None] / col, y * weight)
        return cls(coef / col)

    @classmethod
    def measure(
        cls, step: Callable[[AtomicData], object], batches: Sequence[AtomicData]
    ) -> tuple[FlopModel, FlopModel, list[int]]:
        """Count FLOPs of ``step`` on each sample batch -> (total model, matmul-only model,
        the counted totals)."""
        kinds = [count_flop_kinds(step, b) for b in batches]
        feats = [batch_features(b) for b in batches]
        total = [k[1] for k in kinds]
        return cls.fit(feats, total), cls.fit(feats, [k[0] for k in kinds]), total

    def predict(self, features: np.ndarray) -> float:
        """Predicted FLOPs of one step on a batch with these features."""
        return float(self.coef[0] + np.dot(self.coef[1:], features))

    def state_dict(self) -> dict:
        return {"coef": [float(c) for c in self.coef]}

    @classmethod
    def from_state(cls, state: dict) -> FlopModel:
        return cls(state["coef"])
