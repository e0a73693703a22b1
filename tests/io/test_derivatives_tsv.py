"""write_tsv's numeric fast path writes the bytes pandas ``to_csv`` writes, and leaves other tables to pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.io import derivatives


def pandas_bytes(table: pd.DataFrame, index: bool) -> bytes:
    return table.to_csv(sep="\t", index=index, na_rep="n/a", float_format="%.6g").encode()


def awkward_floats(rng: np.random.Generator, size: int) -> np.ndarray:
    values = rng.standard_normal(size) * 10.0 ** rng.integers(-12, 12, size)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-320, 1.7e308, 123456.5, 999999.5, 1e-5, 0.1])
    values[: specials.size] = specials
    return rng.permutation(values)


@pytest.mark.parametrize("index", [False, True])
def test_numeric_tables_are_byte_identical_to_pandas(tmp_path, index):
    rng = np.random.default_rng(3)
    names = [f"7Networks_LH_Vis_{i}" for i in range(40)]
    table = pd.DataFrame({name: awkward_floats(rng, 40) for name in names}, index=pd.Index(names, name="region"))
    table.insert(1, "node", np.arange(40, dtype=np.int64) - 7)
    assert derivatives._numeric_tsv(table, index=index) is not None  # the fast path is taken
    out = derivatives.write_tsv(tmp_path / "t.tsv", table, index=index)
    assert out.read_bytes() == pandas_bytes(table, index)


def test_empty_numeric_table_is_byte_identical(tmp_path):
    table = pd.DataFrame({"a": np.array([], dtype=np.float64), "b": np.array([], dtype=np.int64)})
    assert derivatives.write_tsv(tmp_path / "e.tsv", table).read_bytes() == pandas_bytes(table, False)


@pytest.mark.parametrize(
    "table",
    [
        pd.DataFrame({"label": ["a", None], "x": [1.0, np.nan]}),  # object column
        pd.DataFrame({"x": np.array([1.5, 2.5], dtype=np.float32)}),  # float32
        pd.DataFrame({"x": [True, False]}),  # bool
        pd.DataFrame({"x": pd.array([1, None], dtype="Int64")}),  # nullable integer
        pd.DataFrame({'quote"d': [1.0], "tab\tbed": [2.0]}),  # labels the csv module quotes
        pd.DataFrame({0: [1.0]}),  # non-string label
        pd.DataFrame({"x": [1.0]}, index=pd.Index(["a\tb"], name="region")),  # index the csv module quotes
    ],
)
def test_other_tables_go_through_pandas(tmp_path, table):
    index = table.index.name is not None
    assert derivatives._numeric_tsv(table, index=index) is None
    assert derivatives.write_tsv(tmp_path / "o.tsv", table, index=index).read_bytes() == pandas_bytes(table, index)
