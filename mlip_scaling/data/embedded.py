"""The embedded default dataset, shipped inside the package (``mlip_scaling/data/default.h5``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mlip_scaling.errors import DataError

__all__ = ["DEFAULT_DATASET_NAME", "default_data_path"]

DEFAULT_DATASET_NAME = "default.h5"


def default_data_path() -> Path:
    """Path of the embedded dataset inside the installed (or checked-out) package.

    Resolved with ``importlib.resources``, so it is found from any working directory after
    ``pip install`` as well as in a source checkout. It may not exist in a checkout where it
    was deleted: callers report that (``make data`` regenerates it).
    """
    entry = resources.files("mlip_scaling.data").joinpath(DEFAULT_DATASET_NAME)
    if not isinstance(entry, Path):
        raise DataError(f"{entry}: the embedded dataset is inside a zip archive; install the "
                        "package unzipped or pass --data")
    return entry
