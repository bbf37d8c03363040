"""docker-compose.yaml as Compose reads it, without an engine: .env.example's defaults, anchors merged, ``${VAR}``
interpolated. Shared by tests/test_compose.py (the file's checks) and tests/production/ (which starts the same
services' configuration on loopback servers).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}, $VAR, $$
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as Compose reads them (comments and blank lines skipped, surrounding quotes removed)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: {raw!r} is not KEY=VALUE"
        key, value = key.strip(), value.strip()
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path.name}:{number}: bad name {key!r}"
        assert key not in values, f"{path.name}:{number}: {key} is defined twice"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one string value."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset_or_empty else str(value)
        if op in (":?", "?"):
            if unset_or_empty:
                raise KeyError(f"{name}: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _VAR.sub(replace, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def references(node: Any) -> list[tuple[str, str | None, str]]:
    """Every (name, operator, argument) the file interpolates; ``$$`` escapes are not references."""
    found = []
    for text in strings(node):
        for match in _VAR.finditer(text):
            if not match.group("escaped"):
                found.append(
                    (
                        match.group("braced") or match.group("plain"),
                        match.group("op"),
                        match.group("arg") or "",
                    )
                )
    return found


@functools.cache
def compose_raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the x-airflow-common anchors and << merges
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@functools.cache
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@functools.cache
def compose() -> dict[str, Any]:
    """The file as Compose sees it with .env.example: anchors merged, variables interpolated."""
    return interpolate_tree(compose_raw(), env_example())


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment minus every variable the compose file or .env.example names."""
    names = set(env_example()) | {name for name, _, _ in references(compose_raw())}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")}
    env.update(extra)
    return env
