"""GemNet-OC (Gasteiger et al., TMLR 2022), the function of fairchem-core 1.10's
``gemnet_oc`` model: the same weights give the same energies and forces (see
``docs/families.md`` and ``tests/test_gemnet.py`` for the measured agreement).

Atoms carry embeddings ``h`` [N, A], directed main-graph edges ``m`` [E, C]. Every block
updates ``m`` from triplets ``b -> a <- c`` (circular basis of the angle), quadruplets
``d -> b -> a <- c`` (angle and dihedral) and atom-to-edge triplets, and ``h`` from the
edges, edge-to-atom triplets and an atom-to-atom pair term, each on its own graph and
cutoff (:mod:`mlip_scaling.models.gemnet_oc.graph`). Output blocks after the embedding and
after every block feed a global MLP: per-atom energies, and with ``direct_forces`` edge
magnitudes ``f_e`` (forces ``F_i = -Σ_{e: centre i} f_e r̂_e``). fairchem has no stress
output; here a direct model's stress is the edge virial ``(1/2V) Σ_e F_e ⊗ r_e`` of those
edge forces, and a gradient model's stress is ``(1/V) ∂E/∂ε`` (``Potential``).
"""

from __future__ import annotations

import torch
from torch import nn

from mlip_scaling import keys
from mlip_scaling.models.blocks import check_atomic_numbers, scatter_sum
from mlip_scaling.models.gemnet_oc import bases as fb
from mlip_scaling.models.gemnet_oc.graph import (
    Edges,
    cap_neighbors,
    quadruplets,
    symmetrize,
    triplets,
)
from mlip_scaling.models.gemnet_oc.interaction import Context, EdgeEmbedding, InteractionBlock
from mlip_scaling.models.gemnet_oc.layers import BasisEmbedding, Dense, OutputBlock, ResidualLayer

__all__ = ["GemNetOC"]

SIZES = (
    "emb_size_atom",
    "emb_size_edge",
    "emb_size_trip_in",
    "emb_size_trip_out",
    "emb_size_quad_in",
    "emb_size_quad_out",
    "emb_size_aint_in",
    "emb_size_aint_out",
    "emb_size_rbf",
    "emb_size_cbf",
    "emb_size_sbf",
    "num_before_skip",
    "num_after_skip",
    "num_concat",
    "num_atom",
    "num_atom_emb_layers",
)
_FLAGS = ("quad_interaction", "atom_edge_interaction", "edge_atom_interaction", "atom_interaction")


class GemNetOC(nn.Module):
    """GemNet-OC energy model: ``data -> {"energies": [N]}`` (+ direct ``forces``, ``stress``).

    Sizes (fairchem's names): ``num_spherical`` (L), ``num_radial``, ``num_blocks``,
    ``emb_size_*`` widths, ``num_before_skip``/``num_after_skip``/``num_concat``/
    ``num_atom``/``num_output_afteratom``/``num_atom_emb_layers``/``num_global_out_layers``
    residual counts. Interactions: ``quad_interaction``, ``atom_edge_interaction``,
    ``edge_atom_interaction``, ``atom_interaction``. Cutoffs (Å): ``cutoff`` is the
    largest (fairchem's ``cutoff_aint``, the neighbour list's), ``cutoff_main`` the
    embedding graph's (fairchem's ``cutoff``), ``cutoff_qint``, ``cutoff_aeaint`` (None:
    ``cutoff_main``). ``max_neighbors*`` caps (None: no cap) per graph as fairchem's,
    ``max_neighbors_strict`` its ``enforce_max_neighbors_strictly``. ``sbf``: two-angle
    basis (``spherical_harmonics`` or ``legendre_outer``); ``envelope_exponent`` p;
    ``extensive`` (energy sum, else mean); ``forces_coupled`` (``f_e = f_{reverse(e)}``);
    ``quad_on_untagged`` (fairchem's ``qint_tags`` contains 0: atoms here are untagged,
    so False leaves the quadruplet graph empty); ``num_elements`` (Z in 1..num_elements).
    """

    def __init__(
        self,
        cutoff: float,
        num_blocks: int,
        emb_size_atom: int,
        emb_size_edge: int,
        emb_size_trip_in: int,
        emb_size_trip_out: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
        num_spherical: int = 7,
        num_radial: int = 128,
        emb_size_quad_in: int = 4,
        emb_size_quad_out: int = 4,
        emb_size_aint_in: int = 4,
        emb_size_aint_out: int = 4,
        emb_size_sbf: int = 4,
        num_before_skip: int = 1,
        num_after_skip: int = 1,
        num_concat: int = 1,
        num_atom: int = 1,
        num_output_afteratom: int = 1,
        num_atom_emb_layers: int = 0,
        num_global_out_layers: int = 2,
        quad_interaction: bool = True,
        atom_edge_interaction: bool = True,
        edge_atom_interaction: bool = True,
        atom_interaction: bool = True,
        cutoff_main: float | None = None,
        cutoff_qint: float | None = None,
        cutoff_aeaint: float | None = None,
        max_neighbors: int | None = None,
        max_neighbors_qint: int | None = None,
        max_neighbors_aeaint: int | None = None,
        max_neighbors_aint: int | None = None,
        max_neighbors_strict: bool = False,
        sbf: str = "legendre_outer",
        envelope_exponent: int = 5,
        extensive: bool = True,
        forces_coupled: bool = False,
        quad_on_untagged: bool = True,
        direct_forces: bool = False,
        num_elements: int = 83,
    ) -> None:
        super().__init__()
        if sbf not in fb.SBF_KINDS:
            raise ValueError(f"sbf {sbf!r} is not one of {fb.SBF_KINDS}")
        self.cutoff, self.direct_forces = float(cutoff), bool(direct_forces)
        main = float(cutoff_main or cutoff)
        self.cutoffs = {
            "main": main,
            "qint": float(cutoff_qint or main),
            "aeaint": float(cutoff_aeaint or main),
            "aint": self.cutoff,
        }
        if max(self.cutoffs.values()) > self.cutoff:
            raise ValueError(f"the cutoffs {self.cutoffs} exceed cutoff={cutoff}")
        self.caps = {
            "main": max_neighbors,
            "qint": max_neighbors_qint or max_neighbors,
            "aeaint": max_neighbors_aeaint or max_neighbors,
            "aint": max_neighbors_aint,
        }
        self.strict, self.sbf, self.exponent = bool(max_neighbors_strict), sbf, envelope_exponent
        self.num_spherical, self.num_radial = num_spherical, num_radial
        self.extensive, self.forces_coupled = bool(extensive), bool(forces_coupled)
        self.quad_on_untagged, self.num_elements = bool(quad_on_untagged), int(num_elements)
        args = locals()
        self.flags = {k: bool(args[k]) for k in _FLAGS}
        sizes = {k: int(args[k]) for k in SIZES}
        self._shared_layers(num_radial, num_spherical, emb_size_rbf, emb_size_cbf, emb_size_sbf)
        self.atom_emb = nn.Module()
        self.atom_emb.embeddings = nn.Embedding(num_elements, emb_size_atom)
        self.edge_emb = EdgeEmbedding(emb_size_atom, num_radial, emb_size_edge)
        self.int_blocks = nn.ModuleList(
            InteractionBlock(sizes, self.flags) for _ in range(num_blocks)
        )
        self.out_blocks = nn.ModuleList(
            OutputBlock(
                emb_size_atom,
                emb_size_edge,
                emb_size_rbf,
                num_atom,
                num_output_afteratom,
                self.direct_forces,
            )
            for _ in range(num_blocks + 1)
        )
        self.out_mlp_E = self._global_mlp(emb_size_atom, num_blocks, num_global_out_layers)
        self.out_energy = Dense(emb_size_atom, 1, activation=False)
        if self.direct_forces:
            self.out_mlp_F = self._global_mlp(emb_size_edge, num_blocks, num_global_out_layers)
            self.out_forces = Dense(emb_size_edge, 1, activation=False)

    @staticmethod
    def _global_mlp(width: int, num_blocks: int, layers: int) -> nn.Sequential:
        return nn.Sequential(
            Dense(width * (num_blocks + 1), width), *(ResidualLayer(width) for _ in range(layers))
        )

    def _shared_layers(self, rad: int, sph: int, rbf: int, cbf: int, sbf: int) -> None:
        """Basis projections shared by all blocks (fairchem's names)."""
        if self.flags["quad_interaction"]:
            self.mlp_rbf_qint = Dense(rad, rbf, activation=False)
            self.mlp_cbf_qint = BasisEmbedding(rad, cbf, sph)
            self.mlp_sbf_qint = BasisEmbedding(rad, sbf, sph**2)
        if self.flags["atom_edge_interaction"]:
            self.mlp_rbf_aeint = Dense(rad, rbf, activation=False)
            self.mlp_cbf_aeint = BasisEmbedding(rad, cbf, sph)
        if self.flags["edge_atom_interaction"]:
            self.mlp_rbf_eaint = Dense(rad, rbf, activation=False)
            self.mlp_cbf_eaint = BasisEmbedding(rad, cbf, sph)
        if self.flags["atom_interaction"]:
            self.mlp_rbf_aint = BasisEmbedding(rad, rbf)
        self.mlp_rbf_tint = Dense(rad, rbf, activation=False)
        self.mlp_cbf_tint = BasisEmbedding(rad, cbf, sph)
        self.mlp_rbf_h = Dense(rad, rbf, activation=False)
        self.mlp_rbf_out = Dense(rad, rbf, activation=False)

    def _rbf(self, edges: Edges, which: str) -> torch.Tensor:
        return fb.radial_basis(edges.length, self.cutoffs[which], self.num_radial, self.exponent)

    def _graphs(self, data: dict[str, torch.Tensor]) -> tuple[dict[str, Edges], torch.Tensor]:
        """fairchem's graphs: ``aint``, ``main`` (symmetric), ``aeaint``, ``qint``; swap."""
        n = data[keys.ATOMIC_NUMBERS].shape[0]
        full = Edges(
            data[keys.EDGE_INDEX],
            data[keys.EDGE_CELL_SHIFT].round().long(),
            data[keys.EDGE_VECTORS],
            data[keys.EDGE_LENGTHS],
        )
        full = full.select(full.length <= self.cutoff)
        any_atom = (
            self.flags["atom_edge_interaction"]
            or self.flags["edge_atom_interaction"]
            or self.flags["atom_interaction"]
        )
        graphs: dict[str, Edges] = {}
        if any_atom:
            graphs["aint"] = cap_neighbors(full, self.caps["aint"], n, self.strict, True)
            base, base_name = graphs["aint"], "aint"
            graphs["main"] = self._subgraph(base, base_name, "main", n)
            graphs["aeaint"] = self._subgraph(base, base_name, "aeaint", n)
        else:
            graphs["main"] = cap_neighbors(
                full.select(full.length <= self.cutoffs["main"]),
                self.caps["main"],
                n,
                self.strict,
                True,
            )
            base, base_name = graphs["main"], "main"
        if self.flags["quad_interaction"]:
            qint = self._subgraph(base, base_name, "qint", n)
            graphs["qint"] = (
                qint
                if self.quad_on_untagged
                else qint.select(torch.zeros_like(qint.length, dtype=torch.bool))
            )
        graphs["main"], swap = symmetrize(graphs["main"])
        return graphs, swap

    def _subgraph(self, edges: Edges, source: str, target: str, n: int) -> Edges:
        new, old = self.cutoffs[target], self.cutoffs[source]
        if abs(new - old) > 1e-8 + 1e-5 * abs(old):  # fairchem's np.isclose test
            edges = edges.select(edges.length <= self.cutoffs[target])
        if self.caps[target] != self.caps[source]:
            edges = cap_neighbors(edges, self.caps[target], n, self.strict, False)
        return edges

    def _context(self, data: dict[str, torch.Tensor]) -> tuple[Context, torch.Tensor]:
        n = data[keys.ATOMIC_NUMBERS].shape[0]
        graphs, swap = self._graphs(data)
        main = graphs["main"]
        u = main.unit
        rbf_main = self._rbf(main, "main")
        trip = {"e2e": triplets(main, main, n)}
        o, e = trip["e2e"]
        sph = fb.circular_basis((u[o] * u[e]).sum(-1).clamp(-1, 1), self.num_spherical)
        bases = {
            "e2e": {
                "rad": self.mlp_rbf_tint(rbf_main),
                "sph": sph,
                "rad_w": self.mlp_cbf_tint.per_edge(rbf_main),
            }
        }
        ctx = Context(
            n,
            main,
            swap,
            trip,
            bases,
            self.mlp_rbf_h(rbf_main),
            aeint=graphs.get("aeaint"),
            aint=graphs.get("aint"),
        )
        if self.flags["quad_interaction"]:
            self._quad_bases(ctx, graphs["qint"], rbf_main)
        if ctx.aeint is not None:
            self._atom_edge_bases(ctx, rbf_main)
        if self.flags["atom_interaction"]:
            ctx.a2a_rad = self.mlp_rbf_aint.radial(self._rbf(ctx.aint, "aint"))
        return ctx, rbf_main

    def _quad_bases(self, ctx: Context, qint: Edges, rbf_main: torch.Tensor) -> None:
        main, uq = ctx.main, qint.unit
        u = main.unit
        quad = quadruplets(main, qint, ctx.num_atoms)
        cos_abd = (uq[quad["in_q"]] * u[quad["in_d"]]).sum(-1).clamp(-1, 1)
        cross_db = torch.linalg.cross(u[quad["in_d"]], uq[quad["in_q"]])
        cos_cab = (u[quad["out_o"]] * uq[quad["out_q"]]).sum(-1).clamp(-1, 1)
        cross_ca = torch.linalg.cross(u[quad["out_o"]], uq[quad["out_q"]])
        angle = fb.dihedral(cross_ca[quad["quad_trip"]], cross_db[quad["quad_in"]])
        rad_w_cir = self.mlp_cbf_qint.per_edge(self._rbf(qint, "qint"))[quad["in_q"]]
        cir = rad_w_cir @ fb.circular_basis(cos_abd, self.num_spherical)[:, :, None]
        sph = fb.spherical_basis(cos_cab[quad["quad_trip"]], angle, self.num_spherical, self.sbf)
        ctx.quad = quad
        ctx.bases["qint"] = {
            "rad": self.mlp_rbf_qint(rbf_main),
            "cir": cir.squeeze(-1),
            "rad_w": self.mlp_sbf_qint.per_edge(rbf_main),
            "sph": sph,
        }

    def _atom_edge_bases(self, ctx: Context, rbf_main: torch.Tensor) -> None:
        main, ae, n = ctx.main, ctx.aeint, ctx.num_atoms
        u, ua = main.unit, ae.unit
        rbf_ae = self._rbf(ae, "aeaint")
        if self.flags["atom_edge_interaction"]:
            o, f = ctx.trip["a2e"] = triplets(main, ae, n)
            cos = (u[o] * ua[f]).sum(-1).clamp(-1, 1)
            ctx.bases["a2e"] = {
                "rad": self.mlp_rbf_aeint(rbf_ae),
                "sph": fb.circular_basis(cos, self.num_spherical),
                "rad_w": self.mlp_cbf_aeint.per_edge(rbf_main),
            }
        if self.flags["edge_atom_interaction"]:
            f, e = ctx.trip["e2a"] = triplets(ae, main, n)
            cos = (ua[f] * u[e]).sum(-1).clamp(-1, 1)
            ctx.bases["e2a"] = {
                "rad": self.mlp_rbf_eaint(rbf_main),
                "sph": fb.circular_basis(cos, self.num_spherical),
                "rad_w": self.mlp_cbf_eaint.per_edge(rbf_ae),
            }

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Data dict -> ``{"energies": [N]}`` (+ ``forces`` [N, 3], ``stress`` [B, 3, 3])."""
        numbers = data[keys.ATOMIC_NUMBERS]
        check_atomic_numbers(numbers, self.num_elements + 1)
        ctx, rbf_main = self._context(data)
        centre = ctx.main.index[0]
        rbf_out = self.mlp_rbf_out(rbf_main)
        h = self.atom_emb.embeddings(numbers - 1)
        m = self.edge_emb(h, rbf_main, ctx.main.index)
        x_e, x_f = self.out_blocks[0](h, m, rbf_out, centre)
        xs_e, xs_f = [x_e], [x_f]
        for block, out in zip(self.int_blocks, self.out_blocks[1:]):
            h, m = block(h, m, ctx)
            x_e, x_f = out(h, m, rbf_out, centre)
            xs_e.append(x_e)
            xs_f.append(x_f)
        energies = self.out_energy(self.out_mlp_E(torch.cat(xs_e, dim=-1))).squeeze(-1)
        if not self.extensive:
            batch = data[keys.BATCH]
            energies = energies / data[keys.NUM_ATOMS][batch].to(energies.dtype)
        out = {keys.ATOMIC_ENERGIES: energies}
        if self.direct_forces:
            f = self.out_forces(self.out_mlp_F(torch.cat(xs_f, dim=-1))).squeeze(-1)
            if self.forces_coupled:
                f = 0.5 * (f + f[ctx.swap])
            out.update(self._direct(f, ctx.main, data))
        return out

    @staticmethod
    def _direct(f: torch.Tensor, main: Edges, data: dict[str, torch.Tensor]) -> dict:
        """Edge magnitudes ``f`` [E] -> forces [N, 3] and the edge-virial stress [B, 3, 3]."""
        n = data[keys.ATOMIC_NUMBERS].shape[0]
        force = -f.unsqueeze(-1) * main.unit  # on the centre atom
        forces = scatter_sum(force, main.index[0], n)
        cell, batch = data[keys.CELL], data[keys.BATCH]
        virial = scatter_sum(
            force[:, :, None] * main.vector[:, None, :], batch[main.index[0]], cell.shape[0]
        )
        volume = torch.linalg.det(cell).abs()
        periodic = data[keys.PBC].all(dim=1) & (volume > 1e-12)
        inv = torch.where(periodic, 0.5 / volume.clamp_min(1e-12), torch.zeros_like(volume))
        stress = 0.5 * (virial + virial.transpose(1, 2)) * inv[:, None, None]
        return {keys.FORCES: forces, keys.STRESS: stress}
