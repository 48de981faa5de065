"""Named SQL: every statement lives in queries.sql under a `-- name: <name>` header.

Code asks for `QUERIES["claim_fire"]`; no SQL is built inline anywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.M)


def parse_queries(text: str) -> dict[str, str]:
    """Split the file into {name: sql}; a name used twice is a bug, so it raises."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql: query {name!r} is defined twice")
        sql = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if not sql:
            raise ValueError(f"queries.sql: query {name!r} is empty")
        queries[name] = sql
    return queries


@cache
def load_queries() -> Mapping[str, str]:
    """The parsed queries of the installed package, read once."""
    text = resources.files("daemon.db").joinpath("queries.sql").read_text(encoding="utf-8")
    return MappingProxyType(parse_queries(text))


def schema_sql() -> str:
    """The schema (top-level schema.sql, shipped inside the package too)."""
    return resources.files("daemon.db").joinpath("schema.sql").read_text(encoding="utf-8")


class _Queries:
    def __getitem__(self, name: str) -> str:
        return load_queries()[name]


#: QUERIES["name"] -> SQL text.
QUERIES = _Queries()
