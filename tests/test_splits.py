"""The split: one SplitSpec stored in every model file, one test set for every caller."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mlip_scaling
from mlip_scaling.data.dataset import test_set as model_test_set
from mlip_scaling.data.splits import SplitSpec, split_indices
from mlip_scaling.errors import ConfigError, DataError

# test indices written down from the split code before SplitSpec existed
# (make_split(n, val, test, seed)): a file written then must keep its test set
OLD_TEST_SETS = [
    (40, {"val_size": 0.1, "test_size": 0.15, "seed": 3}, [2, 13, 27, 28, 33, 38]),
    (25, {"val_size": 2, "test_size": 3, "seed": 0}, [7, 12, 13]),
    (60, {"val_size": 0.05, "test_size": 0.05, "seed": 0}, [16, 20, 38]),
]


@pytest.mark.parametrize(("n", "split", "expected"), OLD_TEST_SETS)
def test_old_model_files_keep_their_test_set(n, split, expected):
    source = list(range(n))
    assert model_test_set({"train": {"split": split}}, source).tolist() == expected
    config = {"val_size": split["val_size"], "test_size": split["test_size"],
              "split_seed": split["seed"], "train_size": None}
    assert model_test_set({"config": config}, source).tolist() == expected  # a run state


def test_a_file_without_split_uses_the_defaults():
    assert model_test_set({"train": {}}, list(range(60))).tolist() == [16, 20, 38]
    assert model_test_set({}, list(range(60)), max_test=2).tolist() == [16, 20]


def test_nested_training_subset_is_unchanged():
    train = SplitSpec(train_size=10).indices(60)["train"]
    assert train.tolist() == [39, 27, 59, 25, 56, 58, 53, 33, 9, 37]
    larger = SplitSpec(train_size=20).indices(60)["train"]
    assert set(train) <= set(larger)


def test_spec_round_trips_and_normalises_sizes():
    spec = SplitSpec(val_size=4.0, test_size=0.1, seed=2, train_size=8)
    assert spec.val_size == 4 and isinstance(spec.val_size, int)
    assert SplitSpec.from_dict(spec.to_dict()) == spec
    assert SplitSpec.from_checkpoint({"train": {"split": spec.to_dict()}}) == spec
    parts = spec.indices(50)
    expected = split_indices(50, 4, 0.1, 2)
    for part in ("test", "val"):  # integer indices: compared as lists
        assert parts[part].tolist() == expected[part].tolist()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"val_size": -1}, "val_size must be a number >= 0"),
    ({"test_size": "0.1"}, "test_size must be a number >= 0"),
    ({"seed": 1.5}, "seed must be an integer >= 0"),
    ({"train_size": 0}, "train_size must be a count >= 1"),
])
def test_bad_spec_is_a_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SplitSpec(**kwargs)


def test_impossible_or_empty_splits_name_the_dataset():
    with pytest.raises(ConfigError, match="cu.h5: cannot split 5 structures"):
        SplitSpec(val_size=3, test_size=3).indices(5, "cu.h5")
    with pytest.raises(ConfigError, match="exceeds the 8 structures"):
        SplitSpec(val_size=1, test_size=1, train_size=9).indices(10, "cu.h5")
    with pytest.raises(DataError, match="the test split is empty"):
        model_test_set({"train": {"split": {"val_size": 2, "test_size": 0}}}, list(range(10)))


def _imports(path: Path) -> set[str]:
    """Modules a file imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("layer", ["scaling", "data"])
def test_scaling_and_data_do_not_import_training(layer):
    root = Path(mlip_scaling.__file__).parent / layer
    offenders = {str(p.relative_to(root)): sorted(m for m in _imports(p)
                                                   if m.startswith("mlip_scaling.training"))
                 for p in root.rglob("*.py")}
    assert len(offenders) > 10 and {k: v for k, v in offenders.items() if v} == {}
