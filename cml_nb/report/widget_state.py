"""Widgets drawn as text from the notebook's saved widget state.

A widget output holds only a model id (``application/vnd.jupyter.widget-view+json``)
and the repr of its first frame (``FloatProgress(value=0.0, max=3.0)``). When a
front end saves the notebook it also writes every model's last state under
``metadata.widgets["application/vnd.jupyter.widget-state+json"]`` (the format of
https://ipywidgets.readthedocs.io/en/8.1.5/embedding.html#embeddable-html-snippet),
where a finished ``tqdm.notebook`` bar reads ``100%``, ``3/3``. The simple widgets
a reader looks at (progress bars, HTML, Label and boxes of those) are drawn from
that state; anything else is left to a note.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any

WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
_MODEL_REF = "IPY_MODEL_"
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"[ \t]+")
BAR_WIDTH = 10

States = Mapping[str, Mapping[str, Any]]


def saved_states(nb: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Model id -> ``{"model_name", "state", ...}`` from a notebook's saved widget state."""
    widgets = (nb.get("metadata") or {}).get("widgets") or {}
    saved = widgets.get(WIDGET_STATE_MIME) if isinstance(widgets, Mapping) else None
    states = saved.get("state") if isinstance(saved, Mapping) else None
    if not isinstance(states, Mapping):
        return {}
    return {str(k): v for k, v in states.items() if isinstance(v, Mapping)}


def _html_text(value: Any) -> str:
    text = _TAG.sub("", str(value or ""))
    # tqdm.notebook pads with U+2007 (figure space) so HTML keeps its columns.
    return _SPACE.sub(" ", html.unescape(text).replace("\u2007", " ")).strip()


def _number(value: Any, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def _progress(state: Mapping[str, Any], _: States, __: int) -> str | None:
    low, high = _number(state.get("min"), 0.0), _number(state.get("max"), 100.0)
    value = min(max(_number(state.get("value"), low), low), high)
    share = (value - low) / (high - low) if high > low else 1.0
    filled = round(share * BAR_WIDTH)
    bar = "|" + "█" * filled + " " * (BAR_WIDTH - filled) + "|"
    label = _html_text(state.get("description"))
    stopped = " (stopped)" if state.get("bar_style") == "danger" else ""
    return (f"{label} " if label else "") + bar + stopped


def _text_value(state: Mapping[str, Any], _: States, __: int) -> str | None:
    label = _html_text(state.get("description"))
    value = _html_text(state.get("value"))
    return f"{label} {value}".strip() if label else value


def _box(separator: str) -> Callable[[Mapping[str, Any], States, int], str | None]:
    def render(state: Mapping[str, Any], states: States, depth: int) -> str | None:
        parts = []
        for child in state.get("children") or ():
            text = widget_text(str(child), states, depth + 1)
            if text is None:
                return None  # one undrawable child: the box is not what a reader saw
            parts.append(text)
        return separator.join(p for p in parts if p)

    return render


#: ``model_name`` (``@jupyter-widgets/controls``) -> text renderer; others are not drawn.
RENDERERS: dict[str, Callable[[Mapping[str, Any], States, int], str | None]] = {
    "FloatProgressModel": _progress,
    "IntProgressModel": _progress,
    "HTMLModel": _text_value,
    "HTMLMathModel": _text_value,
    "LabelModel": _text_value,
    "HBoxModel": _box(" "),
    "VBoxModel": _box("\n"),
    "BoxModel": _box("\n"),
}


def widget_text(model_id: str, states: States, depth: int = 0) -> str | None:
    """The widget as text, or None when its state is missing or its kind is not drawn."""
    if depth > 20:  # a cycle of children in a hand-edited notebook
        return None
    model = states.get(model_id.removeprefix(_MODEL_REF))
    if model is None or model.get("model_module", "@jupyter-widgets/controls") != (
        "@jupyter-widgets/controls"
    ):
        return None
    renderer = RENDERERS.get(str(model.get("model_name", "")))
    state = model.get("state")
    if renderer is None or not isinstance(state, Mapping):
        return None
    return renderer(state, states, depth)
