"""Field paths: the writable subset of JMESPath (`address.city`, `"odd-key".x`).

Paths are parsed by jmespath itself, so quoting and escaping follow its grammar; only plain
field chains are accepted because a path must name one place we can also write to.
"""

from __future__ import annotations

from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

MISSING: Any = type(
    "Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda s: False}
)()


class PathError(ValueError):
    """A path that is not a plain JMESPath field chain."""


def parse_path(text: str) -> tuple[str, ...]:
    """`"address.city"` -> `("address", "city")`; raises PathError with the reason."""
    if not isinstance(text, str) or not text:
        raise PathError(f"a field path must be a non-empty string, got {text!r}")
    try:
        ast = jmespath.compile(text).parsed
    except JMESPathError as exc:
        raise PathError(f"invalid JMESPath field path {text!r}: {exc}") from None
    keys: list[str] = []

    def walk(node: dict) -> None:
        if node["type"] == "field":
            keys.append(node["value"])
        elif node["type"] == "subexpression":
            for child in node["children"]:
                walk(child)
        else:
            raise PathError(
                f"{text!r} is a JMESPath {node['type'].replace('_', ' ')}, not a field path; "
                "a path names one field, like `address.city` (use `compute:` for expressions)"
            )

    walk(ast)
    return tuple(keys)


def format_path(keys: tuple[str | int, ...], root: str = "$") -> str:
    """`("items", 3, "name")` -> `$.items[3].name`, the notation errors use."""
    out = [root]
    for key in keys:
        if isinstance(key, int):
            out.append(f"[{key}]")
        elif key.isidentifier():
            out.append(f".{key}")
        else:
            out.append(f'."{key}"')
    return "".join(out)


def get_path(obj: Any, keys: tuple[str, ...]) -> Any:
    """The value at `keys`, or MISSING if any step is absent or not an object."""
    for key in keys:
        if not isinstance(obj, dict):
            return MISSING
        obj = obj.get(key, MISSING)
        if obj is MISSING:
            return MISSING
    return obj


def put_path(obj: dict, keys: tuple[str, ...], value: Any) -> None:
    """Set `keys` in `obj`, creating intermediate objects."""
    for key in keys[:-1]:
        nxt = obj.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            obj[key] = nxt
        obj = nxt
    obj[keys[-1]] = value
