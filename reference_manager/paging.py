"""Cursor pagination of the operator API's lists (keyset: the cost of a page does not grow
with the fleet).

A list answers `{"items": [...], "nextCursor": "…" | null}` and, when there is a next page, a
`Link: <…?cursor=…>; rel="next"` header (as the meter export does). The cursor is opaque to
clients: the sort key of the page's last item, as URL-safe base64 of a JSON array. A store
method is asked for `limit + 1` items after the cursor; the extra one only says "there is more".
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from quart import request

from metersync_manager.params import BadParam, int_param

MAX_LIMIT = 1000
MAX_CURSOR = 1024  # as the OpenAPI says


def encode(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str, *types: type) -> tuple[Any, ...]:
    """The values of a cursor this manager gave out, of `types`; else BadParam."""
    if len(text) > MAX_CURSOR:
        raise BadParam(f"cursor is longer than {MAX_CURSOR} characters")
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if (
            isinstance(values, list)
            and len(values) == len(types)
            and all(_is(v, t) for v, t in zip(values, types, strict=True))
        ):
            return tuple(values)
    except (ValueError, TypeError):
        pass
    raise BadParam("cursor is not one this manager gave out")


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def params(*types: type) -> tuple[int, tuple[Any, ...] | None]:
    """(`limit`, the decoded `cursor` or None) of this request."""
    limit = int_param("limit", 100, 1, MAX_LIMIT)
    cursor = request.args.get("cursor")
    return limit, decode(cursor, *types) if cursor else None


def page(
    items: list[dict[str, Any]], limit: int, key: Callable[[dict[str, Any]], tuple[Any, ...]]
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The answer for up to `limit + 1` items fetched after the cursor."""
    more = len(items) > limit
    items = items[:limit]
    nxt = encode(*key(items[-1])) if more and items else None
    headers: dict[str, str] = {}
    if nxt:
        args = {k: v for k, v in request.args.items() if k != "offset"}
        args["cursor"] = nxt
        headers["Link"] = f'<{request.path}?{urlencode(args)}>; rel="next"'
    return {"items": items, "nextCursor": nxt}, 200, headers
