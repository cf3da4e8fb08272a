"""Opaque cursors for keyset pagination (issue 3: "cursor pagination that stays correct while new
events arrive").

A page is "the next N rows after the last one seen", in a stable order (ids for events, which only
grow): rows written while a client pages through a list do not shift the pages already read, nothing
is skipped and nothing is seen twice, which ``OFFSET`` cannot promise. The cursor is that position,
with a fingerprint of the search it belongs to, base64url-encoded: clients pass it back unchanged; a
cursor used with another search, or not one of ours, is a 422 (``INVALID_CURSOR``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from gateway.errors import FieldError, InvalidCursor


def fingerprint(criteria: dict[str, Any]) -> str:
    blob = json.dumps(criteria, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def encode(position: dict[str, Any], criteria: dict[str, Any]) -> str:
    blob = json.dumps({"p": position, "f": fingerprint(criteria)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(blob.encode()).decode().rstrip("=")


def decode(cursor: str | None, criteria: dict[str, Any]) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position, fp = data["p"], data["f"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        position, fp = None, None
    if not isinstance(position, dict) or fp != fingerprint(criteria):
        raise InvalidCursor("curseur invalide : reprendre la recherche depuis le début",
                            errors=[FieldError("cursor", "curseur inconnu ou d'une autre recherche", "invalid_cursor")])
    return position
