"""Read OpenLineage run events back as one graph: which task read and wrote which dataset, and the path between.

For looking at what the operators emitted (the file transport writes one JSON event per line) and for testing
it: ``python -m airflow_mlops.core.lineage_graph events.jsonl`` prints every task with its inputs and outputs,
and ``--from <uri> --to <uri>`` the chain of tasks and datasets between two datasets. Framework-free.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.openlineage import dataset_name

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

Node = tuple[str, str, str]  # ("dataset" | "job", namespace, name)


def load_events(path: str) -> list[dict[str, Any]]:
    """The events of a JSON-lines file (``append: true``) or of a folder of one-event files."""
    files = [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".json", ".jsonl")))
    events: list[dict[str, Any]] = []
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    events.append(json.loads(line))
    return events


@dataclass
class LineageGraph:
    """Datasets and tasks (OpenLineage jobs) joined by the inputs and outputs of completed task runs."""

    edges: dict[Node, set[Node]] = field(default_factory=dict)
    facets: dict[Node, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[Node, tuple[list[Node], list[Node]]] = field(default_factory=dict)
    #: The facets a dataset had in a task's newest event, as its input ("in") or output ("out"): the model's
    #: version, alias and decision at that step.
    seen_by: dict[tuple[Node, Node, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]]) -> LineageGraph:
        graph = cls()
        for event in events:
            if event.get("eventType") not in {"COMPLETE", "FAIL"} or "job" not in event:
                continue
            job: Node = ("job", event["job"]["namespace"], event["job"]["name"])
            inputs = [graph._dataset(job, d, "in") for d in event.get("inputs") or []]
            outputs = [graph._dataset(job, d, "out") for d in event.get("outputs") or []]
            if not inputs and not outputs:
                continue
            seen_in, seen_out = graph.jobs.setdefault(job, ([], []))
            seen_in.extend(n for n in inputs if n not in seen_in)
            seen_out.extend(n for n in outputs if n not in seen_out)
            for node in inputs:
                graph.edges.setdefault(node, set()).add(job)
            for node in outputs:
                graph.edges.setdefault(job, set()).add(node)
        return graph

    def _dataset(self, job: Node, dataset: dict[str, Any], side: str) -> Node:
        node: Node = ("dataset", dataset["namespace"], dataset["name"])
        facets = {**(dataset.get("facets") or {}), **(dataset.get("inputFacets") or {})}
        self.facets.setdefault(node, {}).update(facets)
        self.seen_by[(job, node, side)] = facets
        return node

    def datasets(self) -> list[Node]:
        return sorted(self.facets)

    def path(self, start: Node, end: Node) -> list[Node] | None:
        """The shortest directed chain dataset -> task -> dataset ... from ``start`` to ``end``, or None."""
        previous: dict[Node, Node | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if node == end:
                chain: list[Node] = []
                step: Node | None = node
                while step is not None:
                    chain.append(step)
                    step = previous[step]
                return chain[::-1]
            for nxt in sorted(self.edges.get(node, ())):
                if nxt not in previous:
                    previous[nxt] = node
                    queue.append(nxt)
        return None

    def is_connected(self) -> bool:
        """True when every dataset and task is reachable from every other, ignoring direction."""
        undirected: dict[Node, set[Node]] = {}
        for node, targets in self.edges.items():
            for target in targets:
                undirected.setdefault(node, set()).add(target)
                undirected.setdefault(target, set()).add(node)
        if not undirected:
            return False
        first = next(iter(undirected))
        seen = {first}
        queue = deque([first])
        while queue:
            for nxt in undirected[queue.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return len(seen) == len(undirected)

    def label(self, node: Node) -> str:
        kind, namespace, name = node
        if kind == "job":
            return name
        facets = self.facets.get(node, {})
        if (facets.get("datasetType") or {}).get("datasetType") == "MODEL":
            return f"[MODEL] {namespace}/{name}"
        return name if namespace == "file" else f"{namespace}/{name}"

    def render(self, chain: Sequence[Node] | None = None) -> str:
        """Every task with its inputs and outputs, or one chain, as text."""
        if chain is not None:
            return "\n  -> ".join(self.label(n) for n in chain)
        lines = []
        for job, (inputs, outputs) in sorted(self.jobs.items()):
            lines.append(self.label(job))
            lines.extend(f"    <- {self.label(n)}{self._note(self.seen_by[(job, n, 'in')])}" for n in inputs)
            lines.extend(
                f"    -> {self.label(n)}{self._note(self.seen_by[(job, n, 'out')])}" for n in outputs
            )
        return "\n".join(lines)

    @staticmethod
    def _note(facets: dict[str, Any]) -> str:
        mlops = facets.get("mlops") or {}
        notes = [f"{k}={v}" for k, v in mlops.items() if not k.startswith("_") and k not in {"name"}]
        checks = (facets.get("dataQualityAssertions") or {}).get("assertions") or []
        if checks:
            notes.append(f"{sum(bool(c.get('success')) for c in checks)}/{len(checks)} assertions passed")
        return f"  ({', '.join(notes)})" if notes else ""


def dataset_node(uri: str) -> Node:
    """The node of a data URI, named as the operators name it."""
    namespace, name = dataset_name(uri)
    return ("dataset", namespace, name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_mlops.core.lineage_graph", description=__doc__)
    parser.add_argument("events", help="a JSON-lines file of OpenLineage events, or a folder of event files")
    parser.add_argument("--from", dest="start", help="a data URI: print the chain from it ...")
    parser.add_argument("--to", dest="end", help="... to this data URI")
    args = parser.parse_args(argv)
    graph = LineageGraph.from_events(load_events(args.events))
    if args.start and args.end:
        chain = graph.path(dataset_node(args.start), dataset_node(args.end))
        if chain is None:
            print(f"no lineage path from {args.start} to {args.end}", file=sys.stderr)
            return 1
        print(graph.render(chain))
        return 0
    print(graph.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
