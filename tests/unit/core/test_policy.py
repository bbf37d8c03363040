"""The retraining policy as a pure function: persistence, cool-down, budget, idempotent replay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_mlops.core.policy import (
    DriftCheck,
    PolicyState,
    RetrainingPolicy,
    decide,
    parse_duration,
)
from airflow_mlops.exceptions import DriftDetectionError, MlopsConfigError

HOUR = 3600.0


def _run(policy, checks, state=None):
    """Feed (key, drifted, at[, version]) checks through decide(); return the decisions and the final state."""
    state = state or PolicyState()
    decisions = []
    for item in checks:
        key, drifted, at = item[:3]
        version = item[3] if len(item) > 3 else "1"
        state, decision = decide(
            policy, state, DriftCheck(key, version, drifted, 0.8 if drifted else 0.1), at
        )
        decisions.append(decision)
    return decisions, state


def test_persistence_needs_consecutive_drifted_checks():
    policy = RetrainingPolicy(persistence=3)
    decisions, state = _run(
        policy,
        [("a", True, 0), ("b", True, 1), ("c", False, 2), ("d", True, 3), ("e", True, 4), ("f", True, 5)],
    )
    assert [d.emit for d in decisions] == [False, False, False, False, False, True]
    assert [d.consecutive for d in decisions] == [1, 2, 0, 1, 2, 3]
    assert "2 of 3" in decisions[1].reason
    assert state.consecutive == 0 and state.last_retrain == 5
    assert state.last_confirmed is not None and state.last_confirmed["key"] == "f"


def test_cooldown_suppresses_a_second_retrain_then_allows_it():
    policy = RetrainingPolicy(cooldown="12h")
    decisions, state = _run(policy, [("a", True, 0), ("b", True, 6 * HOUR), ("c", True, 13 * HOUR)])
    assert [d.emit for d in decisions] == [True, False, True]
    assert decisions[1].confirmed and "cool-down" in decisions[1].reason
    assert state.retrains == (0.0, 13 * HOUR)


def test_budget_caps_retrains_per_window():
    policy = RetrainingPolicy(max_retrains=2, window=timedelta(days=1))
    checks = [("a", True, 0), ("b", True, HOUR), ("c", True, 2 * HOUR), ("d", True, 25 * HOUR)]
    decisions, state = _run(policy, checks)
    assert [d.emit for d in decisions] == [True, True, False, True]
    assert "budget" in decisions[2].reason
    assert state.retrains == (25 * HOUR,)  # the retrains at 0 h and 1 h left the 24 h window


def test_retried_check_replays_and_never_advances_twice():
    policy = RetrainingPolicy(persistence=1)
    state = PolicyState()
    check = DriftCheck("dag/run/drift/-1", "1", True, 0.9)
    state1, first = decide(policy, state, check, 10.0)
    state2, again = decide(policy, state1, check, 20.0)
    assert first.emit and not first.replayed
    assert again.emit and again.replayed and state2 == state1
    assert len(state2.history) == 1 and state2.retrains == (10.0,)


def test_new_model_version_restarts_persistence():
    policy = RetrainingPolicy(persistence=2)
    decisions, _ = _run(policy, [("a", True, 0, "1"), ("b", True, 1, "2"), ("c", True, 2, "2")])
    assert [d.emit for d in decisions] == [False, False, True]


def test_state_round_trips_and_history_is_bounded():
    policy = RetrainingPolicy()
    _, state = _run(policy, [(f"k{i}", i % 2 == 0, float(i)) for i in range(40)])
    assert len(state.history) == 20
    assert PolicyState.from_json(state.to_json()) == state
    assert len(state.to_json()) < 8000
    with pytest.raises(DriftDetectionError, match="Delete the tag"):
        PolicyState.from_json('{"history": [{"nope": 1}]}')


def test_policy_validation_and_from_obj():
    assert RetrainingPolicy.from_obj(None) == RetrainingPolicy()
    policy = RetrainingPolicy.from_obj(
        '{"persistence": 2, "cooldown": "90m", "window": "7d", "max_retrains": 3}'
    )
    assert policy.cooldown == 5400 and policy.window == 7 * 86400 and policy.persistence == 2
    assert parse_duration(timedelta(minutes=2), what="x") == 120
    for bad in (
        {"persistence": 0},
        {"max_retrains": -1},
        {"cooldown": "soon"},
        {"cooldown": -5},
        {"nope": 1},
    ):
        with pytest.raises(MlopsConfigError):
            RetrainingPolicy.from_obj(bad)
    with pytest.raises(MlopsConfigError, match="not valid JSON"):
        RetrainingPolicy.from_obj("{")
