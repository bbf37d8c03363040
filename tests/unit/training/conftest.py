"""Tiny generated datasets for the trainer tests."""

from __future__ import annotations

import pytest

from tests.helpers.frames import make_frame


@pytest.fixture
def cls_uri(tmp_path):
    path = tmp_path / "cls.parquet"
    make_frame().to_parquet(path)
    return str(path)


@pytest.fixture
def reg_uri(tmp_path):
    path = tmp_path / "reg.parquet"
    make_frame(task="regression").to_parquet(path)
    return str(path)
