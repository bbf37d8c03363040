"""The shared poll loop of the provider's triggers, without a server: errors, retries, serialization."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from airflow_mlops.exceptions import ModelNotFound
from airflow_mlops.triggers.base import MlflowPollTrigger


class _Scripted(MlflowPollTrigger):
    serialized_fields: ClassVar[tuple[str, ...]] = ("thing",)
    event_fields: ClassVar[tuple[str, ...]] = ("thing",)

    def __init__(self, *, thing: str, script: list[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.thing = thing
        self.script = list(script or [])
        self.calls = 0

    def describe(self) -> str:
        return f"thing {self.thing!r}"

    def check(self) -> dict[str, Any] | None:
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def _events(trigger: MlflowPollTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_fires_once_after_waiting_and_transient_errors_reset_by_a_good_check():
    trigger = _Scripted(
        thing="x",
        script=[None, OSError("blip"), None, OSError("blip"), {"version": "3"}],
        poll_interval=0,
        max_consecutive_errors=2,
    )
    assert _events(trigger) == [{"status": "success", "thing": "x", "version": "3"}]
    assert trigger.calls == 5


def test_gives_up_after_max_consecutive_errors_with_the_last_error():
    trigger = _Scripted(
        thing="x", script=[OSError("a"), OSError("b")], poll_interval=0, max_consecutive_errors=2
    )
    (event,) = _events(trigger)
    assert event["status"] == "error" and event["thing"] == "x"
    assert (
        event["message"]
        == "Gave up watching thing 'x' after 2 failed checks in a row; last error: OSError: b"
    )


def test_a_permanent_error_is_reported_at_once():
    trigger = _Scripted(thing="x", script=[ModelNotFound("no such model")], poll_interval=0)
    assert _events(trigger) == [{"status": "error", "thing": "x", "message": "no such model"}]
    assert trigger.calls == 1


def test_serialize_round_trips_through_the_classpath():
    from airflow.sdk._shared.module_loading import import_string

    trigger = _Scripted(thing="x", mlflow_conn_id="c", poll_interval=2, max_consecutive_errors=3)
    path, kwargs = trigger.serialize()
    assert path == f"{__name__}._Scripted"
    assert kwargs == {"thing": "x", "mlflow_conn_id": "c", "poll_interval": 2.0, "max_consecutive_errors": 3}
    assert import_string(path)(**kwargs).serialize() == (path, kwargs)
