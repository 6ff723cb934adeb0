"""The schema gate: the only door from the device to the outside world.

An event leaves only if it is of a public type, fits the size limit, validates against its
published JSON Schema and carries no blob that could smuggle audio or image bytes. Anything
else is dropped and counted by reason, never forwarded.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from functools import cache
from typing import Any

import jsonschema

from pendant.events import MAX_EVENT_BYTES, PUBLIC_TYPES, SCHEMA_DIR, Event, EventError, parse_event

log = logging.getLogger(__name__)

# 48+ characters of base64/hex alphabet without a space is not something a person said.
BLOB = re.compile(r"[A-Za-z0-9+/=_-]{48,}")
PUBLIC_NAMES = frozenset(cls.model_fields["type"].default for cls in PUBLIC_TYPES)
ID_KEYS = frozenset({"id", "session_id"})


@cache
def _validator(event_type: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{event_type}.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _strings(value: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(key, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, key)]
    return []


class Gate:
    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()
        self.passed = 0

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        log.warning("gate dropped an event: %s", reason)

    def admit(self, payload: bytes) -> Event | None:
        if len(payload) > MAX_EVENT_BYTES:
            self._drop("oversized")
            return None
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: a few KiB of '[' nest deeper than the parser's stack.
            self._drop("not_json")
            return None
        # isinstance first: {"type": []} is unhashable and would raise in the set lookup.
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            self._drop("not_public_type")
            return None
        if data["type"] not in PUBLIC_NAMES:
            self._drop("not_public_type")
            return None
        if any(BLOB.search(s) for k, s in _strings(data) if k not in ID_KEYS):
            self._drop("blob")
            return None
        errors = list(_validator(data["type"]).iter_errors(data))
        if errors:
            self._drop("schema")
            return None
        try:
            event = parse_event(payload)
        except EventError:
            self._drop("schema")
            return None
        self.passed += 1
        return event
