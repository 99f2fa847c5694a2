"""Buffers of mathematical constants that stay exact whatever dtype path a model takes.

A model built in float32 and then converted to float64 would otherwise keep float32-rounded
constants (S² grid matrices, Gaussian centres, norm balances). :class:`ExactConstants`
keeps a float64 master of each such buffer and re-derives the buffer from it whenever the
module is moved or cast (``.to``, ``.double``, ``.cuda``), also after a state dict loaded
rounded values into it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ExactConstants"]


class ExactConstants(nn.Module):
    """``nn.Module`` whose :meth:`register_constant` buffers are re-derived from float64."""

    def register_constant(self, name: str, value: torch.Tensor) -> None:
        """Register buffer ``name`` (default dtype and device) with a float64 CPU master."""
        master = value.detach().to(device="cpu", dtype=torch.float64, copy=True)
        self.__dict__.setdefault("_constant_masters", {})[name] = master
        dtype, device = torch.get_default_dtype(), torch.get_default_device()
        self.register_buffer(name, master.to(device=device, dtype=dtype, copy=True))

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 (torch's signature)
        super()._apply(fn, recurse)
        for name, master in self.__dict__.get("_constant_masters", {}).items():
            buf = getattr(self, name)
            # a copy: loading a state dict writes into buffers in place
            self._buffers[name] = master.to(device=buf.device, dtype=buf.dtype, copy=True)
        return self
