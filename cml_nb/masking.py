"""Mask secrets in an executed notebook: every cell, every output, every MIME type, metadata.

A token can reach a notebook in many shapes: a printed line, an exception, a
DataFrame cell pandas cut to ``ghp_AbCdEfGh…``, a JSON or vendor-JSON output
(plotly, Vega), JavaScript, SVG text, a widget's saved state, a ``log_param``
value, or the injected parameters cell itself. Everything that is text is masked
with one :class:`~cml_nb.secrets.Scrubber`; base64 binary images are the only
data left as they are (their bytes are pixels, not text a reader sees).

The same function masks the final notebook and each ``--live`` snapshot, so the
first version a forge keeps is masked like the last.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from cml_nb.notebook import INJECTED_TAG, MAX_DEPTH, joined, too_deep
from cml_nb.secrets import MASK, Scrubber, looks_secret, mask_parameters

#: MIME types whose notebook data is base64 of binary bytes, not text.
BINARY_MIMES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "application/pdf"}
)


def _scrubbed(value: Any, scrubber: Scrubber) -> Any:
    """``value`` scrubbed; what changed becomes nbformat nodes again (``cell.metadata``).

    Unchanged values are the same objects (``Scrubber.scrub_data``), so the large JSON
    documents of a notebook are not rebuilt node by node.
    """
    from nbformat import from_dict

    new = scrubber.scrub_data(value)
    if new is value or not isinstance(new, dict | list):
        return new
    return from_dict(new)  # type: ignore[no-untyped-call]


def _injected_source(nb: Any, masked: Mapping[str, Any]) -> str:
    from papermill.translators import translate_parameters

    meta = nb.get("metadata", {})
    kernel = meta.get("kernelspec", {}).get("name", "python3")
    language = meta.get("language_info", {}).get("name", "python")
    return str(translate_parameters(kernel, language, dict(masked), "Parameters"))


def _mask_output(output: Any, scrubber: Scrubber) -> None:
    for key in ("text", "ename", "evalue"):
        if key in output:
            output[key] = scrubber.scrub(joined(output[key]))
    if "traceback" in output:
        output["traceback"] = [scrubber.scrub(line) for line in output["traceback"]]
    data = output.get("data")
    if isinstance(data, dict):
        for mime in list(data):
            if mime in BINARY_MIMES and isinstance(data[mime], str | list):
                continue
            value = data[mime]
            # A list is a multi-line text MIME (nbformat splits lines); anything else
            # is a string or a JSON document (application/json, vendor JSON, widgets).
            if isinstance(value, list):
                data[mime] = scrubber.scrub(joined(value))
            elif too_deep(value):  # a kernel displayed it; no later stage could walk it
                data[mime] = f"(removed by cml-nb: {mime} nested over {MAX_DEPTH} levels deep)"
            else:
                data[mime] = _scrubbed(value, scrubber)
    if "metadata" in output:
        output["metadata"] = _scrubbed(output["metadata"], scrubber)


def _logged_secrets(nb: Any, scrubber: Scrubber) -> None:
    """Make values logged under secret-looking names known secrets, shown as ``***``.

    ``log_param("api_key", v)`` (from a cml-nb older than the masking in log_param,
    or ``log_metrics`` with such a name): ``v`` is then masked wherever else it shows.
    """
    from cml_nb.metrics import METRICS_MIME

    for cell in nb.get("cells", ()):
        for output in cell.get("outputs", ()) or ():
            payload = (output.get("data") or {}).get(METRICS_MIME)
            if not isinstance(payload, dict):
                continue
            for section in ("params", "metrics"):
                values = payload.get(section)
                if not isinstance(values, dict):
                    continue
                secret = [v for k, v in values.items() if looks_secret(str(k))]
                if secret:
                    scrubber.add(*(str(v) for v in secret if v not in (None, MASK)))
                    payload[section] = mask_parameters(values)


def mask_notebook(nb: Any, injected: Mapping[str, Any], scrubber: Scrubber) -> None:
    """Mask, in place, secret parameters and every credential anywhere in ``nb``.

    Args:
        nb: the executed notebook (nbformat node or plain dict).
        injected: the parameters as injected; secret-looking names are shown ``***``
            in the injected cell and the papermill metadata.
        scrubber: knows the secret values (parameters, environment) and token formats.
    """
    masked = mask_parameters(injected)
    secret_names = any(looks_secret(name) for name in injected)
    _logged_secrets(nb, scrubber)
    for cell in nb.get("cells", ()):
        tags = (cell.get("metadata", {}) or {}).get("tags", ()) or ()
        if secret_names and INJECTED_TAG in tags:
            cell["source"] = _injected_source(nb, masked)
        if "source" in cell:
            cell["source"] = scrubber.scrub(joined(cell["source"]))
        if "metadata" in cell:
            cell["metadata"] = _scrubbed(cell["metadata"], scrubber)
        for bundle in (cell.get("attachments") or {}).values():  # base64 again, but SVG
            for mime in list(bundle):
                if mime not in BINARY_MIMES:
                    bundle[mime] = _scrubbed(bundle[mime], scrubber)
        for output in cell.get("outputs", ()) or ():
            _mask_output(output, scrubber)
    meta = nb.get("metadata")
    if meta is not None:
        if secret_names:
            meta.setdefault("papermill", {})["parameters"] = masked
        # Widget state (metadata.widgets), papermill's records and anything else.
        for key in list(meta):
            meta[key] = _scrubbed(meta[key], scrubber)


def masked_copy(nb: Any, injected: Mapping[str, Any], scrubber: Scrubber) -> Any:
    """A masked deep copy of ``nb`` (the original, still executing, is left alone)."""
    snapshot = copy.deepcopy(nb)
    mask_notebook(snapshot, injected, scrubber)
    return snapshot
