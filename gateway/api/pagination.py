"""Opaque cursors for keyset pagination (issue 3: "cursor pagination that stays correct while new
events arrive").

A page is "the next N rows after the last one seen", in a stable order (ids for events, which only
grow): rows written while a client pages through a list do not shift the pages already read, nothing
is skipped and nothing is seen twice, which ``OFFSET`` cannot promise. The cursor is that position,
with a fingerprint of the search it belongs to, base64url-encoded: clients pass it back unchanged; a
cursor used with another search, or not one of ours, is a 422 (``INVALID_CURSOR``).

A cursor is not signed: a client can read and rewrite it, and learns nothing it may not see (its own
search is in it, and the position of a row it was shown). So what comes back is checked against the
shape the list wrote (`decode`'s ``shape``) before it reaches a query: an id of 2**70 was a 500 (the
database's integer overflowed), a text where an id goes silently restarted the list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from gateway.errors import FieldError, InvalidCursor


def fingerprint(criteria: dict[str, Any]) -> str:
    blob = json.dumps(criteria, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def encode(position: dict[str, Any], criteria: dict[str, Any]) -> str:
    blob = json.dumps({"p": position, "f": fingerprint(criteria)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(blob.encode()).decode().rstrip("=")


#: Largest id a cursor may name: the databases' 64-bit integers.
MAX_ID = 2**63 - 1


def _fits(value: Any, kind: type) -> bool:
    if kind is int:  # not a bool (JSON's true is not an id), and within the store's integers
        return value.__class__ is int and 0 <= value <= MAX_ID
    if kind is datetime:  # with its offset, as written, and an instant the store can hold in UTC
        try:
            moment = datetime.fromisoformat(value)
            return moment.tzinfo is not None and moment.astimezone(UTC) is not None
        except (TypeError, ValueError, OverflowError):
            return False
    return isinstance(value, kind) and 0 < len(value) <= 64


def decode(cursor: str | None, criteria: dict[str, Any], *, shape: dict[str, type]) -> dict[str, Any] | None:
    """The position a cursor of ``criteria``'s search holds, every member as ``shape`` says (``int``: an id,
    ``str``: a short text, ``datetime``: an ISO timestamp, as text); None without a cursor."""
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position, fp = data["p"], data["f"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        position, fp = None, None
    if (not isinstance(position, dict) or fp != fingerprint(criteria) or position.keys() != shape.keys()
            or not all(_fits(position[name], kind) for name, kind in shape.items())):
        raise InvalidCursor("curseur invalide : reprendre la recherche depuis le début",
                            errors=[FieldError("cursor", "curseur inconnu ou d'une autre recherche", "invalid_cursor")])
    return position
