"""Great Expectations plumbing: the quiet import and the ephemeral data context every validation runs in.

GX is imported here, inside functions only: importing this module imports no GX.
"""

from __future__ import annotations

import logging
from typing import Any


def import_gx(quiet: bool) -> Any:
    if quiet:
        # GX logs ~200 INFO lines on import once Airflow's logging is configured.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    if quiet:
        # GX pins this module's logger to INFO on import (one line per context about a temporary docs site).
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    return gx


def ensure_gx_context(quiet: bool) -> None:
    """Make sure GX has a current context (suite code calling ``add_expectation`` needs one); never replace one."""
    gx = import_gx(quiet)
    from great_expectations.data_context.data_context.context_factory import project_manager

    try:
        project_manager.get_current_project()
    except Exception:  # noqa: BLE001 - no GX project of any kind: use an ephemeral context
        ephemeral_context(gx, quiet)


def ephemeral_context(gx: Any, quiet: bool) -> Any:
    context = gx.get_context(mode="ephemeral")
    if quiet:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context
