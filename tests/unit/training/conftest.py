"""Tiny generated datasets for the trainer tests."""

from __future__ import annotations

from tests.helpers.frames import cls_uri, reg_uri  # noqa: F401 - fixtures
