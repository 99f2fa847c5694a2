"""Fused CPU kernels of EquiformerV2's per-edge S² activation, with a pure-torch fallback.

``s2_activation(x, to_grid, from_grid)`` is ``from_grid^T silu(to_grid x)`` per row of
``x`` [N, K, C] (to_grid [G, K], from_grid [G, Ko]; constants) -> [N, Ko, C]. Unfused it
is 3 operator calls forward and several more in the force backward and in the double
backward of a force loss, each on a full [N, G, C] tensor. The operators ``mlip_scaling::s2_act``,
``s2_act_backward`` and ``s2_act_double`` (csrc/s2_activation.cpp, C++ with OpenMP
through ``at::parallel_for``) do one pass per row each; their first and second
derivatives are registered with ``torch.library``, so ``torch.autograd.grad`` with
``create_graph=True`` (forces, then the force loss's gradient) runs fused throughout. A
third derivative is not implemented.

The extension is compiled on first use with ``torch.utils.cpp_extension`` into a cache
directory (``MLIP_SCALING_EXT_DIR``, default ``~/.cache/mlip_scaling/ext``), then reused.
Without a C++ compiler or ninja, or with ``MLIP_SCALING_NO_EXT=1``, every call takes the
pure-torch path; one log line says which. The pure-torch path is also used for non-CPU
tensors, under autocast, while compiling or exporting (so exported programs need no
extension), and inside :func:`fused_kernels` ``(False)``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["available", "fused_kernels", "s2_activation", "s2_activation_reference"]

logger = logging.getLogger(__name__)

#: environment variable that forces the pure-torch path when set to a non-empty value
DISABLE_ENV = "MLIP_SCALING_NO_EXT"
#: environment variable naming the build cache directory
CACHE_ENV = "MLIP_SCALING_EXT_DIR"
_SOURCE = Path(__file__).parent / "csrc" / "s2_activation.cpp"
_state: dict[str, bool | None] = {"loaded": None, "enabled": True}


def s2_activation_reference(
    x: torch.Tensor, to_grid: torch.Tensor, from_grid: torch.Tensor
) -> torch.Tensor:
    """Pure torch: [N, K, C] -> [N, Ko, C], ``from_grid^T silu(to_grid x)`` per row."""
    grid = torch.nn.functional.silu(torch.einsum("gk,nkc->ngc", to_grid, x))
    return torch.einsum("gk,ngc->nkc", from_grid, grid)


def s2_activation(x: torch.Tensor, to_grid: torch.Tensor, from_grid: torch.Tensor) -> torch.Tensor:
    """[N, K, C] -> [N, Ko, C]: the fused operator where it applies, else the reference."""
    if _use_fused(x, to_grid, from_grid):
        return torch.ops.mlip_scaling.s2_act(x, to_grid, from_grid)
    return s2_activation_reference(x, to_grid, from_grid)


@contextmanager
def fused_kernels(enabled: bool) -> Iterator[None]:
    """Within the block, use the fused kernels (where available) or not."""
    before = _state["enabled"]
    _state["enabled"] = enabled
    try:
        yield
    finally:
        _state["enabled"] = before


def available() -> bool:
    """Whether the compiled kernels are loaded (compiling them on the first call)."""
    if _state["loaded"] is None:
        _state["loaded"] = _load()
    return bool(_state["loaded"])


def _use_fused(x: torch.Tensor, *constants: torch.Tensor) -> bool:
    if not _state["enabled"] or x.device.type != "cpu":
        return False
    if x.dtype not in (torch.float32, torch.float64):
        return False
    if any(c.dtype != x.dtype or c.requires_grad for c in constants):
        return False
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    return available()


def _load() -> bool:
    if os.environ.get(DISABLE_ENV):
        logger.info("EquiformerV2 fused kernels: pure torch (%s is set)", DISABLE_ENV)
        return False
    if shutil.which(os.environ.get("CXX", "c++")) is None or shutil.which("ninja") is None:
        logger.info("EquiformerV2 fused kernels: pure torch (no C++ compiler or ninja)")
        return False
    cache = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "mlip_scaling" / "ext"))
    try:
        from torch.utils import cpp_extension

        suffix, isa = _instruction_set()
        name = "mlip_scaling_fused" + suffix
        (cache / name).mkdir(parents=True, exist_ok=True)
        cpp_extension.load(
            name=name,
            sources=[str(_SOURCE)],
            extra_cflags=["-O3", "-fno-trapping-math", "-fopenmp", *isa],
            extra_ldflags=["-fopenmp"],
            build_directory=str(cache / name),
            is_python_module=False,
            verbose=False,
        )
        _register()
    except Exception as exc:  # noqa: BLE001 - any build or load failure means pure torch
        logger.info("EquiformerV2 fused kernels: pure torch (build failed: %s)", exc)
        return False
    logger.info("EquiformerV2 fused kernels: C++/OpenMP extension loaded from %s", cache)
    return True


def _instruction_set() -> tuple[str, list[str]]:
    """(name suffix, compiler flags): AVX2 and FMA where this CPU has them (Linux), else
    the compiler's baseline; the suffix keeps the two builds apart in the cache."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "", []
    if "avx2" in flags and "fma" in flags:
        return "_avx2", ["-mavx2", "-mfma"]
    return "", []


def _register() -> None:
    """Shapes for tracing, and the first and second derivatives of the operators."""
    lib = "mlip_scaling::"

    @torch.library.register_fake(lib + "s2_act")
    def _(x, to_grid, from_grid):  # noqa: ANN001, ANN202
        return x.new_empty(x.shape[0], from_grid.shape[1], x.shape[2])

    @torch.library.register_fake(lib + "s2_act_backward")
    def _(gy, x, to_grid, from_grid):  # noqa: ANN001, ANN202
        return torch.empty_like(x)

    @torch.library.register_fake(lib + "s2_act_double")
    def _(ggx, gy, x, to_grid, from_grid):  # noqa: ANN001, ANN202
        return torch.empty_like(gy), torch.empty_like(x)

    torch.library.register_autograd(lib + "s2_act", _act_backward, setup_context=_save_inputs)
    torch.library.register_autograd(
        lib + "s2_act_backward", _act_double_backward, setup_context=_save_inputs
    )


def _save_inputs(ctx, inputs, output) -> None:  # noqa: ANN001
    if any(c.requires_grad for c in inputs[-2:]):
        raise ValueError("s2_act: the grid matrices are constants and cannot require grad")
    ctx.save_for_backward(*inputs)


def _act_backward(ctx, gy: torch.Tensor):  # noqa: ANN001, ANN202
    x, to_grid, from_grid = ctx.saved_tensors
    return torch.ops.mlip_scaling.s2_act_backward(gy, x, to_grid, from_grid), None, None


def _act_double_backward(ctx, ggx: torch.Tensor):  # noqa: ANN001, ANN202
    gy, x, to_grid, from_grid = ctx.saved_tensors
    g_gy, g_x = torch.ops.mlip_scaling.s2_act_double(ggx, gy, x, to_grid, from_grid)
    return g_gy, g_x, None, None
