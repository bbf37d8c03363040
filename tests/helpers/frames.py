"""Small generated training tables (four numeric features and a label), shared by the unit and integration tiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_frame(rows: int = 600, seed: int = 0, task: str = "classification") -> pd.DataFrame:
    """Features ``a``-``d``; ``label`` is "yes"/"no" (classification) or a float (regression) learnable from them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    signal = 2.0 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]
    if task == "classification":
        frame["label"] = np.where(signal + rng.normal(scale=0.3, size=rows) > 0, "yes", "no")
    else:
        frame["label"] = 3.0 * signal + 10.0 + rng.normal(scale=0.1, size=rows)
    return frame


@pytest.fixture
def cls_uri(tmp_path: Path) -> str:
    """A classification table as parquet (import the fixture into a conftest or test module to use it)."""
    path = tmp_path / "cls.parquet"
    make_frame().to_parquet(path)
    return str(path)


@pytest.fixture
def reg_uri(tmp_path: Path) -> str:
    """A regression table as parquet."""
    path = tmp_path / "reg.parquet"
    make_frame(task="regression").to_parquet(path)
    return str(path)
