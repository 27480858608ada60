"""Find and mask credentials in text: known token formats and known secret values.

Used by every stage that writes something a person may read: the executed
notebook, logs, reports, comments, errors. Known values come from parameters and
environment variables whose names look secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

_SECRET_NAME = re.compile(
    r"(token|passw(or)?d|secret|credential|private|api[_-]?key|access[_-]?key|(^|_)key(s)?($|_)|auth)",
    re.IGNORECASE,
)

#: Credential formats that are secret wherever they appear (only the ``secret`` group, if any).
#: A known prefix followed by 8 or more token characters is enough: pandas and other
#: reprs truncate long strings (``ghp_AbCdEfGh…``), and the part they keep is still
#: most of what an attacker needs to confirm a guess.
TOKEN_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"\bgh[pousr]_[A-Za-z0-9]{8,}",  # GitHub classic and app tokens (40 chars whole)
        r"\bgithub_pat_[A-Za-z0-9_]{8,}",  # GitHub fine-grained tokens
        r"\bgl(pat|dt|rt|cbt|ptt|ft|imt|oas|agent|soat)-[A-Za-z0-9_\-]{8,}",  # GitLab tokens
        r"\b(AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{8,}",  # AWS access key ids (16 chars whole)
        r"(?i)secret_access_key['\"]?\s*[:=]\s*['\"]?(?P<secret>[A-Za-z0-9/+=]{40})",  # AWS
        r"\bxox[abposr]-[A-Za-z0-9-]{8,}",  # Slack tokens
        r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",  # Slack webhooks
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)",
    )
)

_SCALARS = frozenset({int, float, bool, type(None)})
_MIN_VALUE_LENGTH = 6  # shorter "secrets" (e.g. "true") would mask ordinary words
#: A known value cut short (``s3cr3t-passw…``) is masked when at least this much of it shows.
_MIN_PREFIX = 8
#: What reprs put where they cut a string: pandas and numpy "…" or "...", IPython "...".
_CUT_MARKS = ("\u2026", "...")


def looks_secret(name: str) -> bool:
    """Whether a parameter or variable name suggests a credential."""
    return bool(_SECRET_NAME.search(name))


def secret_env_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret."""
    env = os.environ if env is None else env
    return [v for k, v in env.items() if looks_secret(k) and len(v) >= _MIN_VALUE_LENGTH]


def _mask_match(match: re.Match[str]) -> str:
    if "secret" not in match.re.groupindex:
        return MASK
    start, end = match.span("secret")
    whole = match.group(0)
    return whole[: start - match.start()] + MASK + whole[end - match.start() :]


class Scrubber:
    """Replaces credentials in strings and nested JSON-like data with ``***``."""

    def __init__(self, values: Iterable[str] = (), *, include_env: bool = True) -> None:
        known = {str(v) for v in values if v is not None and len(str(v)) >= _MIN_VALUE_LENGTH}
        if include_env:
            known.update(secret_env_values())
        # Longest first, so a value that contains another is masked whole.
        self._values = sorted(known, key=len, reverse=True)

    def add(self, *values: str) -> None:
        """Mask these values too."""
        new = {v for v in values if v and len(v) >= _MIN_VALUE_LENGTH}
        self._values = sorted(set(self._values) | new, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every known value and token pattern masked.

        A known value also counts when a repr cut it short: 8 or more of its first
        characters followed by a cut mark ("…", "...") or the end of the text.
        """
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
            if len(value) > _MIN_PREFIX and value[:_MIN_PREFIX] in text:
                text = _mask_cut(text, value)
        for pattern in TOKEN_PATTERNS:
            text = pattern.sub(_mask_match, text)
        return text

    def scrub_data(self, data: Any) -> Any:
        """JSON-like ``data`` with every string (keys too) scrubbed.

        Containers with nothing to mask come back as the same object (a copy only where
        something changed, tuples become lists): a notebook's large JSON outputs
        (plotly figures, widget state) are walked, not rebuilt.
        """
        kind = type(data)
        if kind in _SCALARS:  # most of a plotly figure: checked first, cheaply
            return data
        if kind is str:
            return self.scrub(data)
        if isinstance(data, Mapping):
            items = [
                (k, self.scrub(k) if isinstance(k, str) else k, v, self.scrub_data(v))
                for k, v in data.items()
            ]
            if isinstance(data, dict) and all(k is nk and v is nv for k, nk, v, nv in items):
                return data
            return {nk: nv for _, nk, _, nv in items}
        if isinstance(data, list | tuple):
            values = [self.scrub_data(v) for v in data]
            if isinstance(data, list) and all(a is b for a, b in zip(values, data, strict=True)):
                return data
            return values
        return data


def _mask_cut(text: str, value: str) -> str:
    """Mask each place where ``value`` starts and is cut short before its end."""
    head = value[:_MIN_PREFIX]
    out: list[str] = []
    start = 0
    while (found := text.find(head, start)) >= 0:
        length = _MIN_PREFIX
        while length < len(value) and found + length < len(text):
            if text[found + length] != value[length]:
                break
            length += 1
        rest = text[found + length :]
        if found + length == len(text) or rest.startswith(_CUT_MARKS):
            out.append(text[start:found] + MASK)
        else:
            out.append(text[start : found + length])
        start = found + length
    out.append(text[start:])
    return "".join(out)


def mask_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with secret-looking names shown as ``***``."""
    return {k: (MASK if looks_secret(k) else v) for k, v in parameters.items()}
