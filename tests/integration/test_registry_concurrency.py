"""Concurrent alias moves against a real MLflow server: gates, rollbacks and manual sets of one model at once.

Each racer has its own ``MlflowClient`` (as separate Airflow workers would) and no Airflow pool serialises
them: the registry's claim protocol alone must keep one champion history. After every round the champion is
the best candidate that passed, the history is a chain (each move starts where the previous one ended, one
entry per move), every "promoted" answer is one entry of it, and a rollback goes back exactly one move.
"""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

import pytest

from airflow_mlops.core.aliases import alias_history, rollback_alias, set_alias
from airflow_mlops.core.gate import promote_if_better
from airflow_mlops.core.lineage import AirflowIdentity
from airflow_mlops.core.registration import resolve_model_source
from airflow_mlops.core.registry import get_alias_version
from airflow_mlops.hooks.mlflow import MlflowHook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUNDS = 20
GATES = 8
RULES = [{"metric": "val_auc", "min_delta": 0.0}]


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.fixture(scope="module")
def ranked_sources(mlflow_server, client) -> list[tuple[float, Any]]:
    """GATES + 1 training-like runs with a model each and distinct val_auc, worst first: (auc, ModelSource)."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    out = []
    with MlflowHook().session():
        mlflow.set_experiment("registry-concurrency")
        for rank in range(GATES + 1):
            auc = round(0.70 + 0.01 * rank, 3)
            tags = AirflowIdentity(dag_id="train", run_id=f"r{rank}", task_id="train").to_tags()
            with mlflow.start_run(tags=tags) as run:
                mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
                mlflow.log_metrics({"val_auc": auc})
            out.append((auc, resolve_model_source(client, run_id=run.info.run_id)))
    return out


def _version(client: Any, name: str, source: Any) -> str:
    mv = client.create_model_version(name, source.source, source.run_id, model_id=source.model_id)
    return str(mv.version)


def _race(mlflow_server: Any, jobs: list[Any]) -> tuple[list[Any], list[BaseException]]:
    """Run every ``job(client)`` at once in its own thread with its own client."""
    from mlflow import MlflowClient

    barrier = threading.Barrier(len(jobs))
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(job: Any) -> None:
        own = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
        barrier.wait()
        try:
            results.append(job(own))
        except BaseException as err:  # surfaced by the caller with its message
            errors.append(err)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    return results, errors


def _assert_chain(history: list[Any], champion: str) -> None:
    assert history, "no champion history"
    assert history[0].from_version is None
    for before, after in zip(history, history[1:], strict=False):
        assert after.from_version == before.to_version, [e.to_dict() for e in history]
    assert len({e.seq for e in history}) == len(history)
    assert history[-1].to_version == champion


def test_concurrent_gates_keep_one_champion_and_a_chain_history(mlflow_server, client, ranked_sources):
    rng = random.Random(14)
    auc_of: dict[str, float]
    for round_no in range(ROUNDS):
        name = f"gates-{round_no}-{uuid.uuid4().hex[:6]}"
        client.create_registered_model(name)
        base_rank = rng.randrange(0, GATES // 2)  # a middling champion: some candidates beat it, some do not
        base = _version(client, name, ranked_sources[base_rank][1])
        assert promote_if_better(client, name, base, RULES, by="setup").promoted
        order = [r for r in range(GATES + 1) if r != base_rank]
        rng.shuffle(order)
        auc_of = {base: ranked_sources[base_rank][0]}
        candidates = []
        for rank in order:
            version = _version(client, name, ranked_sources[rank][1])
            auc_of[version] = ranked_sources[rank][0]
            candidates.append(version)

        results, errors = _race(
            mlflow_server,
            [
                lambda own, v=v, i=i, n=name, r=round_no: promote_if_better(
                    own, n, v, RULES, by=f"round{r}/gate{i}"
                )
                for i, v in enumerate(candidates)
            ],
        )
        assert not errors, [f"{type(e).__name__}: {e}" for e in errors]
        champion = get_alias_version(client, name, "champion")
        best = max(candidates, key=auc_of.__getitem__)
        assert champion == best, f"round {round_no}: champion v{champion}, best candidate v{best}"
        history = alias_history(client, name, "champion")
        _assert_chain(history, champion)
        # every move beat the version it replaced; every "promoted" answer is exactly one move of the history
        for event in history[1:]:
            assert auc_of[event.to_version] > auc_of[str(event.from_version)], event.to_dict()
        promoted = sorted(r.version for r in results if r.promoted)
        assert promoted == sorted(e.to_version for e in history[1:]), (
            promoted,
            [e.to_dict() for e in history],
        )
        for result in results:
            if result.promoted:
                moved = next(e for e in history if e.to_version == result.version)
                assert result.previous_champion_version == moved.from_version

        back = rollback_alias(client, name, "champion", by=f"round{round_no}/rollback")
        assert (back.version, back.previous_version) == (history[-1].from_version, champion)
        assert get_alias_version(client, name, "champion") == history[-1].from_version
        after = alias_history(client, name, "champion")
        assert len(after) == len(history) + 1 and after[-1].action == "rollback"


def test_concurrent_rollbacks_and_sets_stay_one_chain(mlflow_server, client, ranked_sources):
    """Rollbacks and manual sets racing each other: every move is one entry and starts where the last ended."""
    name = f"moves-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    versions = [_version(client, name, source) for _, source in ranked_sources]
    for version in versions[:5]:
        set_alias(client, name, "champion", version, by=f"setup/{version}")
    jobs = [lambda own, i=i: rollback_alias(own, name, "champion", by=f"rollback{i}") for i in range(3)] + [
        lambda own, v=v: set_alias(own, name, "champion", v, by=f"set/{v}") for v in versions[5:]
    ]
    results, errors = _race(mlflow_server, jobs)
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors]
    history = alias_history(client, name, "champion")
    _assert_chain(history, get_alias_version(client, name, "champion"))
    moved = [r for r in results if r.moved]
    assert len(history) == 5 + len(moved), ([r.to_summary() for r in results], [e.to_dict() for e in history])
