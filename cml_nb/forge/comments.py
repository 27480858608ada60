"""Report comments: the hidden marker, the hidden metrics, and sticky upserts.

A report comment starts with ``<!-- cml-nb:report NAME -->`` and ends with
``<!-- cml-nb:metrics {...} -->``; both are HTML comments, invisible when rendered.
``upsert`` finds the newest comment carrying the marker written by the same
account (every page), updates it in place, and after creating one removes
duplicates that a concurrent job may have posted at the same moment.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cml_nb.forge.base import Comment, Forge, Target

log = logging.getLogger(__name__)

_MARKER = re.compile(r"<!-- cml-nb:report (?P<name>[A-Za-z0-9._/-]+) -->")
_METRICS = re.compile(r"<!-- cml-nb:metrics (?P<json>\{.*?\}) -->", re.DOTALL)
_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")


def marker_name(name: str) -> str:
    """``name`` reduced to the characters a marker may hold."""
    cleaned = _UNSAFE.sub("-", name.strip()).strip("-")
    return cleaned or "report"


def marker_line(name: str) -> str:
    """The hidden first line that identifies the report comment ``name``."""
    return f"<!-- cml-nb:report {marker_name(name)} -->"


def metrics_line(payload: Mapping[str, Any]) -> str:
    """``payload`` as a hidden HTML comment (``--`` escaped so it cannot end it)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    text = text.replace("--", "-\\u002d")  # a JSON escape; "--" would close the comment
    return f"<!-- cml-nb:metrics {text} -->"


def envelope(markdown: str, name: str, payload: Mapping[str, Any]) -> str:
    """The full comment body: marker, the report, hidden metrics."""
    return f"{marker_line(name)}\n{markdown.rstrip()}\n\n{metrics_line(payload)}\n"


def envelope_size(name: str, payload: Mapping[str, Any]) -> int:
    """Characters ``envelope`` adds around the report."""
    return len(envelope("", name, payload))


def has_marker(body: str, name: str) -> bool:
    """Whether ``body`` is the report comment ``name``."""
    return any(m.group("name") == marker_name(name) for m in _MARKER.finditer(body))


def is_report(body: str) -> bool:
    """Whether ``body`` is any cml-nb report comment."""
    return _MARKER.search(body) is not None


def parse_metrics(body: str) -> dict[str, Any] | None:
    """The hidden metrics payload of a comment body, None when it has none."""
    found = _METRICS.search(body)
    if found is None:
        return None
    try:
        data = json.loads(found.group("json"))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


@dataclass
class UpsertResult:
    """What ``upsert`` did: ``created`` or ``updated``, and the comment."""

    action: str
    comment: Comment


def _mine(comment: Comment, login: str | None) -> bool:
    # App tokens (GITHUB_TOKEN) cannot name themselves; their comments are by bots.
    return comment.author == login if login else comment.bot


def find_existing(forge: Forge, target: Target, name: str) -> list[Comment]:
    """Comments on ``target`` with marker ``name`` by this token's account, oldest first."""
    login = forge.login()
    return [c for c in forge.list_comments(target) if has_marker(c.body, name) and _mine(c, login)]


def upsert(
    forge: Forge,
    target: Target,
    body: str,
    name: str,
    *,
    new: bool = False,
    existing: list[Comment] | None = None,
) -> UpsertResult:
    """Update the newest report comment ``name`` on ``target``, or create one.

    Args:
        forge: the forge driver.
        target: the PR, commit or issue.
        body: the full comment body (with marker).
        name: the marker name.
        new: post a fresh comment even when one exists.
        existing: the result of ``find_existing`` when the caller already has it.
    """
    if new:
        existing = []
    elif existing is None:
        existing = find_existing(forge, target, name)
    if existing:
        newest = max(existing, key=lambda c: c.id)
        return UpsertResult("updated", forge.update_comment(target, newest, body))
    created = forge.create_comment(target, body)
    if new:
        return UpsertResult("created", created)
    return _settle_race(forge, target, body, name, created)


def _settle_race(
    forge: Forge, target: Target, body: str, name: str, created: Comment
) -> UpsertResult:
    """Leave one comment when concurrent jobs (or a retried POST) created several.

    Every job applies the same rule, so they agree without talking: the oldest
    marked comment survives and carries the latest body; the others are deleted.
    """
    marked = find_existing(forge, target, name)
    if len(marked) <= 1:
        return UpsertResult("created", created)
    keep = min(marked, key=lambda c: c.id)
    for extra in marked:
        if extra.id != keep.id:
            log.info("removing duplicate report comment %s (concurrent publish)", extra.id)
            forge.delete_comment(target, extra)
    if keep.id == created.id:
        return UpsertResult("created", created)
    return UpsertResult("updated", forge.update_comment(target, keep, body))
