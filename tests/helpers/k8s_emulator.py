"""A small Kubernetes API emulation for tests: the core/v1 subset KubernetesPodOperator uses, on loopback.

No cluster can run on the test machines, so this HTTP server plays kube-apiserver, scheduler and kubelet for
pods: it accepts the unmodified operator's requests (pod create / read / list by label selector / merge-patch /
delete, container logs with ``follow`` and ``timestamps``, events by ``fieldSelector``, ``/version``), "runs"
each pod by starting its container ``command + args`` as a local process with the pod's env (literal values,
``secretKeyRef`` resolved from Secrets registered with :meth:`K8sEmulator.add_secret`, a few ``fieldRef``s),
and reports Pending -> Running -> Succeeded/Failed with the process's real exit code.

Faults are injected per pod with :meth:`K8sEmulator.inject` (see :class:`Fault`): never scheduled, slow start,
OOMKilled, a forced non-zero exit, deleted mid-run. Memory limits (``resources.limits.memory``) are enforced
the way the kernel's cgroup does it: a pod whose processes' resident memory exceeds the limit is SIGKILLed and
reported ``OOMKilled`` with exit code 137.

Every request is recorded (method, path, query, JSON body, headers) so tests can assert on the pod spec the
operator really sent. Each pod's processes run in their own process group, killed on pod delete and on
:meth:`K8sEmulator.stop`, so a test leaves nothing running. Test equipment only, never shipped.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

EMULATED_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-mlops-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
NODE_NAME = "emulated-node-0"
TERMINATION_MESSAGE_MAX_BYTES = 2048
TERMINATION_MESSAGE_MAX_LINES = 80
_POD_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+)(?:/(?P<sub>log))?)?/?$")
_EVENTS_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events/?$")
_QUANTITY = re.compile(r"^(?P<num>[0-9.]+(?:[eE][-+]?[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$")
_UNITS = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_nano(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_quantity(value: Any) -> float:
    """A Kubernetes resource quantity (``512Mi``, ``2``, ``500m``, ``1e9``) as a number of base units."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group("num")) * _UNITS[match.group("unit")]


class FaultKind(enum.StrEnum):
    """What can go wrong with an emulated pod."""

    UNSCHEDULABLE = "unschedulable"  # stays Pending with PodScheduled=False / Unschedulable
    SLOW_START = "slow_start"  # scheduled, but ContainerCreating for ``seconds`` first
    OOM_KILLED = "oom_killed"  # SIGKILLed, reported OOMKilled with exit code 137
    EXIT_CODE = "exit_code"  # SIGKILLed, reported Error with ``exit_code``
    DELETED = "deleted"  # deleted by someone else (node drain, spot reclaim, kubectl delete)


@dataclass(frozen=True)
class Fault:
    """
    One fault for the next pod created. ``after_log`` (a substring of a container log line) or ``after_s``
    (seconds after the container started) says when a mid-run fault fires; ``after_log`` wins when both are set
    and the text appears first.
    """

    kind: FaultKind
    seconds: float = 0.0
    after_s: float | None = None
    after_log: str | None = None
    exit_code: int = 1
    message: str = ""

    @classmethod
    def unschedulable(cls, message: str = "") -> Fault:
        return cls(FaultKind.UNSCHEDULABLE, message=message)

    @classmethod
    def slow_start(cls, seconds: float) -> Fault:
        return cls(FaultKind.SLOW_START, seconds=seconds)

    @classmethod
    def oom_killed(cls, *, after_s: float | None = None, after_log: str | None = None) -> Fault:
        return cls(FaultKind.OOM_KILLED, after_s=after_s, after_log=after_log)

    @classmethod
    def exit(cls, code: int, *, after_s: float | None = None, after_log: str | None = None) -> Fault:
        return cls(FaultKind.EXIT_CODE, exit_code=code, after_s=after_s, after_log=after_log)

    @classmethod
    def deleted(cls, *, after_s: float | None = None, after_log: str | None = None) -> Fault:
        return cls(FaultKind.DELETED, after_s=after_s, after_log=after_log)

    @property
    def is_mid_run(self) -> bool:
        return self.kind in (FaultKind.OOM_KILLED, FaultKind.EXIT_CODE, FaultKind.DELETED)


@dataclass
class RecordedRequest:
    """One API request the emulator received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]

    def q(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None


@dataclass
class EmulatedPod:
    """The emulator's state of one pod."""

    namespace: str
    name: str
    manifest: dict[str, Any]
    faults: list[Fault]
    logs: list[tuple[datetime, str]] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    env_keys: list[str] = field(default_factory=list)
    workdir: Path | None = None
    deleting: bool = False
    frozen: bool = False  # stopped by a log-triggered fault until the fault's signal lands
    terminated: threading.Event = field(default_factory=threading.Event)
    forced: tuple[str, int, str] | None = (
        None  # (reason, exit code, message) set by a fault or the OOM killer
    )
    peak_rss_bytes: int = 0

    @property
    def spec(self) -> dict[str, Any]:
        return self.manifest["spec"]

    @property
    def status(self) -> dict[str, Any]:
        return self.manifest["status"]

    @property
    def container(self) -> dict[str, Any]:
        return self.spec["containers"][0]

    @property
    def labels(self) -> dict[str, str]:
        return self.manifest["metadata"].get("labels") or {}


def _label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality- and set-based label selectors (``a=b,c!=d,!e,f,g in (x,y),h notin (z)``)."""
    terms: list[str] = []
    depth, current = 0, ""
    for char in selector:
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    terms.append(current)
    for raw in terms:
        term = raw.strip()
        if not term:
            continue
        set_match = re.match(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$", term)
        if set_match:
            values = {v.strip() for v in set_match.group("values").split(",")}
            present = labels.get(set_match.group("key"))
            inside = present is not None and present in values
            if (set_match.group("op") == "in") != inside:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces, so split after the last ')'
        rest = stat.rsplit(")", 1)[-1].split()
        if len(rest) > 2 and rest[2] == str(pgid) and rest[0] != "Z":
            pids.append(int(entry))
    return pids


def _group_rss_bytes(pgid: int) -> int:
    total = 0
    for pid in _group_pids(pgid):
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def _group_alive(pgid: int) -> bool:
    return bool(_group_pids(pgid))


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class K8sEmulator:
    """
    The emulated cluster. Use as a context manager or call :meth:`start` / :meth:`stop`.

    .. code-block:: python

        with K8sEmulator(namespace="ml") as k8s:
            k8s.add_secret("ml", "mlflow-auth", {"MLFLOW_TRACKING_TOKEN": "..."})
            k8s.inject(Fault.oom_killed(after_s=1))
            monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", k8s.connection_json())
            ...  # run a KubernetesPodOperator
            assert k8s.wait_until_empty()

    :param namespace: default namespace of the kubeconfig and the connection.
    :param image_env: environment every container starts with before the pod's env (what an image's ``ENV``
        lines would set); ``PATH`` always starts with this interpreter's ``bin`` folder so ``python`` in a
        container command is the test environment's Python.
    :param token: bearer token the kubeconfig carries (recorded, not enforced).
    :param grace_cap_s: the longest SIGTERM grace period honoured on delete (keeps tests quick).
    :param enforce_memory_limits: SIGKILL and report OOMKilled when a pod's RSS exceeds its memory limit.
    """

    def __init__(
        self,
        *,
        namespace: str = "default",
        image_env: dict[str, str] | None = None,
        token: str = "emulator-token",
        grace_cap_s: float = 2.0,
        enforce_memory_limits: bool = True,
        monitor_interval_s: float = 0.1,
    ) -> None:
        self.namespace = namespace
        self.token = token
        self.grace_cap_s = grace_cap_s
        self.enforce_memory_limits = enforce_memory_limits
        self.monitor_interval_s = monitor_interval_s
        bin_dir = str(Path(sys.executable).parent)
        self.image_env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            **(image_env or {}),
        }
        self.requests: list[RecordedRequest] = []
        self.pods: dict[tuple[str, str], EmulatedPod] = {}
        self.all_pods: list[EmulatedPod] = []  # every pod ever created, deleted ones included
        self.events: list[dict[str, Any]] = []
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self._faults: list[list[Fault]] = []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._resource_version = 1000
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self._root = Path(tempfile.mkdtemp(prefix="k8s-emulator-"))
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> K8sEmulator:
        handler = type("_Handler", (_ApiHandler,), {"emulator": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, name="k8s-emulator", daemon=True
        )
        self._server_thread.start()
        return self

    def stop(self) -> None:
        """Kill every pod's process group, stop the server, remove the work folders."""
        self._stopping = True
        with self._lock:
            pods = list(self.all_pods)
            self._changed.notify_all()
        for pod in pods:
            if pod.proc is not None:
                _kill_group(pod.proc.pid, signal.SIGKILL)
        for pod in pods:
            if pod.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    pod.proc.wait(timeout=10)
        for thread in list(self._threads):
            thread.join(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> K8sEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ client configuration
    def kubeconfig(self, namespace: str | None = None) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "emulated", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "emulated",
                    "context": {
                        "cluster": "emulated",
                        "user": "emulated",
                        "namespace": namespace or self.namespace,
                    },
                }
            ],
            "current-context": "emulated",
        }

    def write_kubeconfig(self, path: Path | None = None, namespace: str | None = None) -> Path:
        """Write a kubeconfig pointing at this emulator (JSON is valid YAML)."""
        path = path or (self._root / "kubeconfig")
        path.write_text(json.dumps(self.kubeconfig(namespace), indent=2))
        return path

    def connection_json(self, namespace: str | None = None) -> str:
        """The value of an ``AIRFLOW_CONN_<ID>`` variable for a ``kubernetes`` connection to this emulator."""
        extra = {
            "kube_config_path": str(self.write_kubeconfig(namespace=namespace)),
            "namespace": namespace or self.namespace,
            "in_cluster": False,
        }
        return json.dumps({"conn_type": "kubernetes", "extra": extra})

    # ------------------------------------------------------------------ test controls
    def add_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Register a Secret (plain values; the emulator never serves them over the API)."""
        with self._lock:
            self.secrets[(namespace, name)] = dict(data)

    def inject(self, *faults: Fault) -> None:
        """The next pod created gets these faults (call again to queue faults for later pods)."""
        with self._lock:
            self._faults.append(list(faults))

    def requests_for(self, method: str, path_suffix: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def created_pod_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of every pod create request, in order."""
        return [r.body for r in self.requests_for("POST") if _POD_PATH.match(r.path)]

    def live_pods(self) -> list[str]:
        with self._lock:
            return sorted(f"{ns}/{name}" for ns, name in self.pods)

    def live_process_groups(self) -> list[int]:
        with self._lock:
            groups = [p.proc.pid for p in self.all_pods if p.proc is not None]
        return [g for g in groups if _group_alive(g)]

    def wait_until_empty(self, timeout: float = 30.0) -> bool:
        """True once no pod object and no pod process is left (deletion is asynchronous, as in Kubernetes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.live_pods() and not self.live_process_groups():
                return True
            time.sleep(0.05)
        return not self.live_pods() and not self.live_process_groups()

    def pod_logs(self, name: str) -> str:
        with self._lock:
            pod = next((p for p in reversed(self.all_pods) if p.name == name), None)
            return "".join(f"{line}\n" for _, line in pod.logs) if pod else ""

    # ------------------------------------------------------------------ internals
    def _bump(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _record_event(
        self, pod: EmulatedPod, reason: str, message: str, *, kind: str = "Normal", field_path: str = ""
    ) -> None:
        with self._lock:
            now = _rfc3339(_now())
            rv = self._bump()
            self.events.append(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {
                        "name": f"{pod.name}.{uuid.uuid4().hex[:16]}",
                        "namespace": pod.namespace,
                        "uid": str(uuid.uuid4()),
                        "resourceVersion": rv,
                        "creationTimestamp": now,
                    },
                    "involvedObject": {
                        "kind": "Pod",
                        "namespace": pod.namespace,
                        "name": pod.name,
                        "uid": pod.manifest["metadata"]["uid"],
                        "apiVersion": "v1",
                        "fieldPath": field_path or None,
                    },
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "count": 1,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "source": {
                        "component": "kubelet" if reason != "FailedScheduling" else "default-scheduler"
                    },
                }
            )

    def _update(self, pod: EmulatedPod, **status: Any) -> None:
        with self._lock:
            pod.status.update(status)
            pod.manifest["metadata"]["resourceVersion"] = self._bump()
            self._changed.notify_all()

    def _container_status(
        self, pod: EmulatedPod, state: dict[str, Any], *, ready: bool = False
    ) -> list[dict]:
        container = pod.container
        return [
            {
                "name": container["name"],
                "image": container.get("image") or "",
                "imageID": f"emulated://{container.get('image') or 'none'}",
                "containerID": f"emulated://{pod.manifest['metadata']['uid']}"
                if "waiting" not in state
                else None,
                "ready": ready,
                "started": "running" in state,
                "restartCount": 0,
                "state": state,
                "lastState": {},
            }
        ]

    # ---- API operations (called by the handler with the lock released)
    def create_pod(self, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        manifest = copy.deepcopy(body)
        metadata = manifest.setdefault("metadata", {})
        name = metadata.get("name")
        if not name and metadata.get("generateName"):
            name = metadata["generateName"] + uuid.uuid4().hex[:5]
        if not name:
            return 422, _status(422, "Invalid", "Pod is invalid: metadata.name: Required value")
        containers = (manifest.get("spec") or {}).get("containers") or []
        if not containers:
            return 422, _status(422, "Invalid", "Pod is invalid: spec.containers: Required value")
        with self._lock:
            if (namespace, name) in self.pods:
                return 409, _status(409, "AlreadyExists", f'pods "{name}" already exists')
            metadata.update(
                name=name,
                namespace=namespace,
                uid=str(uuid.uuid4()),
                resourceVersion=self._bump(),
                creationTimestamp=_rfc3339(_now()),
            )
            metadata.setdefault("labels", {})
            manifest.setdefault("apiVersion", "v1")
            manifest.setdefault("kind", "Pod")
            manifest["status"] = {"phase": "Pending", "qosClass": "Burstable"}
            faults = self._faults.pop(0) if self._faults else []
            pod = EmulatedPod(namespace=namespace, name=name, manifest=manifest, faults=faults)
            pod.workdir = self._root / "pods" / f"{namespace}-{name}-{metadata['uid'][:8]}"
            self.pods[(namespace, name)] = pod
            self.all_pods.append(pod)
            response = copy.deepcopy(manifest)
        thread = threading.Thread(target=self._kubelet, args=(pod,), name=f"kubelet-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return 201, response

    def get_pod(self, namespace: str, name: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found', name=name)
            return 200, copy.deepcopy(pod.manifest)

    def list_pods(self, namespace: str, selector: str | None) -> dict[str, Any]:
        with self._lock:
            items = [
                copy.deepcopy(p.manifest)
                for (ns, _), p in self.pods.items()
                if ns == namespace and (not selector or _label_selector_matches(selector, p.labels))
            ]
            return {
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {"resourceVersion": str(self._resource_version)},
                "items": items,
            }

    def patch_pod(self, namespace: str, name: str, patch: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found', name=name)
            if not isinstance(patch, dict):
                return 415, _status(415, "UnsupportedMediaType", "only merge patches are emulated")
            allowed = {"metadata": patch.get("metadata")} if "metadata" in patch else {}
            meta_patch = {
                k: v for k, v in (allowed.get("metadata") or {}).items() if k in ("labels", "annotations")
            }
            _merge_patch(pod.manifest["metadata"], meta_patch)
            pod.manifest["metadata"]["resourceVersion"] = self._bump()
            self._changed.notify_all()
            return 200, copy.deepcopy(pod.manifest)

    def delete_pod(
        self, namespace: str, name: str, grace_period_s: float | None = None, *, reason: str = "Killing"
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found', name=name)
            first = not pod.deleting
            pod.deleting = True
            pod.manifest["metadata"]["deletionTimestamp"] = _rfc3339(_now())
            grace = (
                pod.spec.get("terminationGracePeriodSeconds", 30)
                if grace_period_s is None
                else grace_period_s
            )
            pod.manifest["metadata"]["deletionGracePeriodSeconds"] = int(grace)
            pod.manifest["metadata"]["resourceVersion"] = self._bump()
            self._changed.notify_all()
            response = copy.deepcopy(pod.manifest)
        if first:
            self._record_event(pod, reason, f"Stopping container {pod.container['name']}")
            thread = threading.Thread(
                target=self._terminate_and_remove,
                args=(pod, min(float(grace), self.grace_cap_s)),
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        return 200, response

    def list_events(self, namespace: str, field_selector: str | None) -> dict[str, Any]:
        wanted: dict[str, str] = {}
        for term in (field_selector or "").split(","):
            if "=" in term:
                key, value = term.replace("==", "=").split("=", 1)
                wanted[key.strip()] = value.strip()
        with self._lock:
            items = []
            for event in self.events:
                if event["metadata"]["namespace"] != namespace:
                    continue
                involved = event["involvedObject"]
                if any(
                    (key == "involvedObject.name" and involved["name"] != value)
                    or (key == "involvedObject.kind" and involved["kind"] != value)
                    or (key == "reason" and event["reason"] != value)
                    for key, value in wanted.items()
                ):
                    continue
                items.append(copy.deepcopy(event))
            return {
                "apiVersion": "v1",
                "kind": "EventList",
                "metadata": {"resourceVersion": str(self._resource_version)},
                "items": items,
            }

    # ---- the kubelet of one pod
    def _kubelet(self, pod: EmulatedPod) -> None:
        faults = {f.kind: f for f in pod.faults}
        try:
            if FaultKind.UNSCHEDULABLE in faults:
                message = faults[FaultKind.UNSCHEDULABLE].message or self._unschedulable_message(pod)
                self._update(
                    pod,
                    conditions=[
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": message,
                            "lastTransitionTime": _rfc3339(_now()),
                        }
                    ],
                )
                self._record_event(pod, "FailedScheduling", message, kind="Warning")
                self._wait_while_not_deleting(pod, None)
                self._finish_deleted_before_start(pod)
                return
            now = _rfc3339(_now())
            self._update(
                pod,
                conditions=[{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
                hostIP="127.0.0.1",
            )
            with self._lock:
                pod.manifest["spec"]["nodeName"] = NODE_NAME
            self._record_event(
                pod, "Scheduled", f"Successfully assigned {pod.namespace}/{pod.name} to {NODE_NAME}"
            )
            self._update(
                pod,
                containerStatuses=self._container_status(
                    pod, {"waiting": {"reason": "ContainerCreating", "message": None}}
                ),
            )
            image = pod.container.get("image") or ""
            self._record_event(pod, "Pulling", f'Pulling image "{image}"', field_path=self._field_path(pod))
            if FaultKind.SLOW_START in faults:
                self._wait_while_not_deleting(pod, faults[FaultKind.SLOW_START].seconds)
            if pod.deleting:
                self._finish_deleted_before_start(pod)
                return
            self._record_event(
                pod, "Pulled", f'Successfully pulled image "{image}"', field_path=self._field_path(pod)
            )
            env, problem = self._resolve_env(pod)
            if problem:
                self._update(
                    pod,
                    containerStatuses=self._container_status(
                        pod, {"waiting": {"reason": "CreateContainerConfigError", "message": problem}}
                    ),
                )
                self._record_event(
                    pod, "Failed", f"Error: {problem}", kind="Warning", field_path=self._field_path(pod)
                )
                self._wait_while_not_deleting(pod, None)
                self._finish_deleted_before_start(pod)
                return
            self._run_container(pod, env, faults)
        except Exception as err:  # the emulator must never hang a test: fail the pod loudly instead
            self._append_log(pod, f"[k8s-emulator] internal error: {type(err).__name__}: {err}")
            self._terminate_status(pod, "EmulatorError", 128, str(err))

    def _unschedulable_message(self, pod: EmulatedPod) -> str:
        requests = (pod.container.get("resources") or {}).get("limits") or {}
        extended = [k for k in requests if "/" in k]
        what = (
            f"Insufficient {extended[0]}" if extended else "node(s) didn't match Pod's node affinity/selector"
        )
        return f"0/3 nodes are available: 3 {what}. preemption: 0/3 nodes are available: 3 No preemption victims found."

    def _field_path(self, pod: EmulatedPod) -> str:
        return f"spec.containers{{{pod.container['name']}}}"

    def _wait_while_not_deleting(self, pod: EmulatedPod, seconds: float | None) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        with self._lock:
            while not pod.deleting and not self._stopping:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._changed.wait(timeout=0.2 if remaining is None else min(remaining, 0.2))

    def _finish_deleted_before_start(self, pod: EmulatedPod) -> None:
        pod.terminated.set()

    def _resolve_env(self, pod: EmulatedPod) -> tuple[dict[str, str], str | None]:
        env = dict(self.image_env)
        container = pod.container
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref:
                data = self.secrets.get((pod.namespace, ref["name"]))
                if data is None and not ref.get("optional"):
                    return env, f'secret "{ref["name"]}" not found'
                for key, value in (data or {}).items():
                    env[(source.get("prefix") or "") + key] = value
        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item and item["value"] is not None:
                env[name] = str(item["value"])
                continue
            value_from = item.get("valueFrom") or {}
            secret_ref = value_from.get("secretKeyRef")
            field_ref = value_from.get("fieldRef")
            if secret_ref:
                data = self.secrets.get((pod.namespace, secret_ref["name"]))
                if data is None:
                    if secret_ref.get("optional"):
                        continue
                    return env, f'secret "{secret_ref["name"]}" not found'
                if secret_ref["key"] not in data:
                    if secret_ref.get("optional"):
                        continue
                    return (
                        env,
                        f"couldn't find key {secret_ref['key']} in Secret {pod.namespace}/{secret_ref['name']}",
                    )
                env[name] = data[secret_ref["key"]]
            elif field_ref:
                path = field_ref.get("fieldPath", "")
                meta = pod.manifest["metadata"]
                values = {
                    "metadata.name": meta["name"],
                    "metadata.namespace": meta["namespace"],
                    "metadata.uid": meta["uid"],
                    "spec.nodeName": NODE_NAME,
                    "status.podIP": "127.0.0.1",
                    "status.hostIP": "127.0.0.1",
                }
                label = re.match(r"^metadata\.labels\['(.+)'\]$", path)
                env[name] = values.get(path, meta.get("labels", {}).get(label.group(1), "") if label else "")
            else:
                env[name] = ""
        pod.env_keys = sorted(k for k in env if k not in self.image_env)
        return env, None

    def _mount_volumes(self, pod: EmulatedPod, env: dict[str, str]) -> None:
        """emptyDir volumes become per-pod folders; one mounted at /tmp becomes the process's TMPDIR."""
        assert pod.workdir is not None
        pod.workdir.mkdir(parents=True, exist_ok=True)
        empty_dirs = {v["name"] for v in pod.spec.get("volumes") or [] if "emptyDir" in v}
        for mount in pod.container.get("volumeMounts") or []:
            if mount.get("name") in empty_dirs:
                folder = pod.workdir / "volumes" / mount["name"]
                folder.mkdir(parents=True, exist_ok=True)
                if mount.get("mountPath") == "/tmp":
                    env["TMPDIR"] = str(folder)

    def _run_container(self, pod: EmulatedPod, env: dict[str, str], faults: dict[FaultKind, Fault]) -> None:
        container = pod.container
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if not container.get("command"):
            self._terminate_status(
                pod, "StartError", 128, "the emulator runs only containers with an explicit command"
            )
            return
        self._mount_volumes(pod, env)
        assert pod.workdir is not None
        with self._lock:  # a delete racing with the start either sees the process or stops the start
            if pod.deleting or self._stopping:
                pod.terminated.set()
                return
            try:
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=container.get("workingDir") or str(pod.workdir),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: killed as a whole on delete / stop
                )
            except OSError as err:
                message = f'exec: "{argv[0]}": {err.strerror}'
                self._record_event(
                    pod, "Failed", f"Error: {message}", kind="Warning", field_path=self._field_path(pod)
                )
                self._terminate_status(pod, "StartError", 128, message)
                return
            pod.proc = proc
        started = _rfc3339(_now())
        pod.manifest["metadata"].setdefault("annotations", {})
        self._update(
            pod,
            phase="Running",
            startTime=started,
            podIP="127.0.0.1",
            conditions=[
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
                {"type": "Ready", "status": "True", "lastTransitionTime": started},
            ],
            containerStatuses=self._container_status(pod, {"running": {"startedAt": started}}, ready=True),
        )
        self._record_event(
            pod, "Created", f"Created container {container['name']}", field_path=self._field_path(pod)
        )
        self._record_event(
            pod, "Started", f"Started container {container['name']}", field_path=self._field_path(pod)
        )
        triggers = [f.after_log for f in faults.values() if f.is_mid_run and f.after_log is not None]
        reader = threading.Thread(target=self._read_output, args=(pod, proc, triggers), daemon=True)
        reader.start()
        self._monitor(pod, proc, faults, limit=self._memory_limit(pod))
        reader.join(timeout=10)
        _kill_group(proc.pid, signal.SIGKILL)  # no orphans survive their container
        self._finish(pod, proc, started)

    def _memory_limit(self, pod: EmulatedPod) -> float | None:
        limits = (pod.container.get("resources") or {}).get("limits") or {}
        if not self.enforce_memory_limits or "memory" not in limits:
            return None
        return parse_quantity(limits["memory"])

    def _monitor(
        self,
        pod: EmulatedPod,
        proc: subprocess.Popen[bytes],
        faults: dict[FaultKind, Fault],
        limit: float | None,
    ) -> None:
        started = time.monotonic()
        mid_run = [f for f in faults.values() if f.is_mid_run]
        while proc.poll() is None:
            if self._stopping:
                _kill_group(proc.pid, signal.SIGKILL)
                break
            if limit is not None:
                rss = _group_rss_bytes(proc.pid)
                pod.peak_rss_bytes = max(pod.peak_rss_bytes, rss)
                if rss > limit:
                    self._fire(pod, proc, Fault(FaultKind.OOM_KILLED))
                    break
            fired = False
            for fault in mid_run:
                due = fault.after_s is not None and time.monotonic() - started >= fault.after_s
                seen = fault.after_log is not None and any(fault.after_log in line for _, line in pod.logs)
                if due or seen:
                    self._fire(pod, proc, fault)
                    fired = True
                    break
            if fired:
                break
            time.sleep(self.monitor_interval_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=self.grace_cap_s + 10)

    def _fire(self, pod: EmulatedPod, proc: subprocess.Popen[bytes], fault: Fault) -> None:
        if fault.kind is FaultKind.OOM_KILLED:
            pod.forced = ("OOMKilled", 137, "")
            _kill_group(proc.pid, signal.SIGKILL)
            self._record_event(
                pod, "OOMKilling", "Memory cgroup out of memory: Killed process", kind="Warning"
            )
        elif fault.kind is FaultKind.EXIT_CODE:
            pod.forced = ("Error", fault.exit_code, "")
            _kill_group(proc.pid, signal.SIGKILL)
        elif fault.kind is FaultKind.DELETED:
            self.delete_pod(pod.namespace, pod.name, reason="Killing")

    def _read_output(self, pod: EmulatedPod, proc: subprocess.Popen[bytes], triggers: list[str]) -> None:
        """
        Collect the container's output. When a line holds a log-triggered fault's text the container is frozen
        (SIGSTOP) on the spot, so the fault lands at that point of the run however late the monitor thread gets
        scheduled on a loaded machine; the fault's own signal then resumes or kills it.
        """
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
            if triggers and any(text in line for text in triggers):
                triggers = []
                _kill_group(proc.pid, signal.SIGSTOP)
                pod.frozen = True
            self._append_log(pod, line)
        proc.stdout.close()

    def _append_log(self, pod: EmulatedPod, line: str) -> None:
        with self._lock:
            pod.logs.append((_now(), line))
            self._changed.notify_all()

    def _finish(self, pod: EmulatedPod, proc: subprocess.Popen[bytes], started: str) -> None:
        code = proc.returncode if proc.returncode is not None else 137
        if pod.forced:
            reason, code, message = pod.forced
        elif code < 0:  # killed by a signal: a container runtime reports 128 + signal
            code = 128 - code
            reason, message = "Error", ""
        else:
            reason, message = ("Completed" if code == 0 else "Error"), ""
        if (
            code != 0
            and not message
            and pod.container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            message = self._log_tail_message(pod)
        self._terminate_status(pod, reason, code, message, started=started)

    def _log_tail_message(self, pod: EmulatedPod) -> str:
        with self._lock:
            lines = [line for _, line in pod.logs][-TERMINATION_MESSAGE_MAX_LINES:]
        text = "\n".join(lines)
        encoded = text.encode()
        if len(encoded) > TERMINATION_MESSAGE_MAX_BYTES:
            text = encoded[-TERMINATION_MESSAGE_MAX_BYTES:].decode(errors="ignore")
        return text

    def _terminate_status(
        self, pod: EmulatedPod, reason: str, code: int, message: str, *, started: str | None = None
    ) -> None:
        finished = _rfc3339(_now())
        terminated = {
            "exitCode": code,
            "reason": reason,
            "message": message or None,
            "startedAt": started or finished,
            "finishedAt": finished,
            "containerID": f"emulated://{pod.manifest['metadata']['uid']}",
        }
        phase = "Succeeded" if code == 0 else "Failed"
        conditions = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started or finished},
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
        ]
        self._update(
            pod,
            phase=phase,
            conditions=conditions,
            containerStatuses=self._container_status(pod, {"terminated": terminated}),
        )
        pod.terminated.set()

    def _terminate_and_remove(self, pod: EmulatedPod, grace: float) -> None:
        with self._lock:
            proc = pod.proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            if pod.frozen:  # a frozen container gets the SIGTERM it would have had, then runs to handle it
                _kill_group(proc.pid, signal.SIGCONT)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            _kill_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        elif proc is not None:
            _kill_group(proc.pid, signal.SIGKILL)
        if proc is not None:
            pod.terminated.wait(timeout=15)
        with self._lock:
            self.pods.pop((pod.namespace, pod.name), None)
            self._changed.notify_all()

    # ---- logs
    def stream_logs(
        self,
        namespace: str,
        name: str,
        *,
        container: str | None,
        follow: bool,
        timestamps: bool,
        since_seconds: float | None,
        tail_lines: int | None,
    ) -> tuple[int, Any]:
        """(status, error body) or (200, iterator of text lines)."""
        with self._lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found', name=name)
            names = [c["name"] for c in pod.spec["containers"]]
            if container and container not in names:
                return 400, _status(400, "BadRequest", f"container {container} is not valid for pod {name}")
            if pod.proc is None and not pod.terminated.is_set():
                state = (pod.status.get("containerStatuses") or [{}])[0].get("state", {})
                reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
                return 400, _status(
                    400,
                    "BadRequest",
                    f'container "{names[0]}" in pod "{name}" is waiting to start: {reason}',
                )
        return 200, self._log_lines(pod, follow, timestamps, since_seconds, tail_lines)

    def _log_lines(
        self,
        pod: EmulatedPod,
        follow: bool,
        timestamps: bool,
        since_seconds: float | None,
        tail_lines: int | None,
    ) -> Iterator[str]:
        with self._lock:
            start = 0
            if since_seconds is not None:
                cutoff = _now() - timedelta(seconds=since_seconds)
                start = next((i for i, (ts, _) in enumerate(pod.logs) if ts >= cutoff), len(pod.logs))
            if tail_lines is not None:
                start = max(start, len(pod.logs) - tail_lines)
        index = start
        while True:
            with self._lock:
                batch = pod.logs[index:]
                index += len(batch)
                # a terminating container keeps streaming until it exits, as with a real kubelet
                done = pod.terminated.is_set() or self._stopping or (pod.deleting and pod.proc is None)
                if not batch and follow and not done:
                    self._changed.wait(timeout=0.5)
                    continue
            for ts, line in batch:
                yield f"{_rfc3339_nano(ts)} {line}\n" if timestamps else f"{line}\n"
            if not follow:
                return
            if not batch and done:
                # the reader may still be flushing the last lines after termination
                with self._lock:
                    if index >= len(pod.logs):
                        return


def _status(code: int, reason: str, message: str, *, name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if name:
        body["details"] = {"name": name, "kind": "pods"}
    return body


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hang up on log streams: normal
            super().handle_error(request, client_address)


class _ApiHandler(BaseHTTPRequestHandler):
    """Routes the emulated core/v1 subset to :class:`K8sEmulator`."""

    emulator: K8sEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the recorded requests
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        emu = self.emulator
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        body = self._body()
        with emu._lock:
            emu.requests.append(
                RecordedRequest(
                    method, parts.path, query, body, {k.lower(): v for k, v in self.headers.items()}
                )
            )

        def q(key: str) -> str | None:
            values = query.get(key)
            return values[0] if values else None

        if method == "GET" and parts.path.rstrip("/") == "/version":
            return self._send_json(200, EMULATED_VERSION)
        if method == "GET" and parts.path.rstrip("/") in ("/api", "/api/v1"):
            return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"]})
        events = _EVENTS_PATH.match(parts.path)
        if events and method == "GET":
            return self._send_json(200, emu.list_events(events["ns"], q("fieldSelector")))
        match = _POD_PATH.match(parts.path)
        if not match:
            return self._send_json(404, _status(404, "NotFound", f"the server could not find {parts.path}"))
        ns, name, sub = match["ns"], match["name"], match["sub"]
        if name is None:
            if method == "GET":
                return self._send_json(200, emu.list_pods(ns, q("labelSelector")))
            if method == "POST":
                return self._send_json(*emu.create_pod(ns, body if isinstance(body, dict) else {}))
        elif sub == "log" and method == "GET":
            return self._stream_log(ns, name, q)
        elif sub is None and method == "GET":
            return self._send_json(*emu.get_pod(ns, name))
        elif sub is None and method == "PATCH":
            return self._send_json(*emu.patch_pod(ns, name, body))
        elif sub is None and method == "DELETE":
            grace = q("gracePeriodSeconds")
            if grace is None and isinstance(body, dict) and body.get("gracePeriodSeconds") is not None:
                grace = body["gracePeriodSeconds"]
            return self._send_json(*emu.delete_pod(ns, name, None if grace is None else float(grace)))
        self._send_json(405, _status(405, "MethodNotAllowed", f"{method} {parts.path} is not emulated"))

    def _stream_log(self, ns: str, name: str, q: Any) -> None:
        truthy = {"true", "1", "True"}
        since = q("sinceSeconds")
        tail = q("tailLines")
        code, result = self.emulator.stream_logs(
            ns,
            name,
            container=q("container"),
            follow=(q("follow") or "") in truthy,
            timestamps=(q("timestamps") or "") in truthy,
            since_seconds=float(since) if since else None,
            tail_lines=int(tail) if tail else None,
        )
        if code != 200:
            return self._send_json(code, result)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in result:
                data = line.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")
