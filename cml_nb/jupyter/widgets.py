"""``ReportPanel``: Preview and Post buttons inside a notebook, for front-ends without the Lab extension.

Classic Notebook, VS Code and other ipywidgets hosts get the same two actions
as the JupyterLab toolbar: the panel calls the functions in ``actions.py``,
which the server extension calls too. The kernel cannot save the notebook, so
the panel reports on the notebook as last saved and says when that was.

Example::

    from cml_nb.widgets import ReportPanel
    ReportPanel()                 # or ReportPanel("train.ipynb", target="pr/12")
"""

from __future__ import annotations

import datetime as dt
import html
import os
from pathlib import Path
from typing import Any

import ipywidgets as w

from cml_nb.errors import CmlNbError, UsageError
from cml_nb.jupyter import actions


def current_notebook() -> Path | None:
    """The notebook this kernel belongs to, when the front-end tells the kernel."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - ipykernel always brings IPython
        shell = None
    vscode = shell.user_ns.get("__vsc_ipynb_file__") if shell is not None else None
    # jupyter_server sets JPY_SESSION_NAME to the notebook's absolute path.
    for candidate in (vscode, os.environ.get("JPY_SESSION_NAME")):
        if candidate and str(candidate).endswith(".ipynb"):
            return Path(candidate)
    return None


def resolve_notebook(path: str | os.PathLike[str] | None) -> Path:
    """``path`` (relative to the working directory), or the kernel's own notebook."""
    found = Path(path) if path is not None else current_notebook()
    if found is None:
        raise UsageError(
            "cml-nb cannot tell which notebook this kernel runs: pass it, "
            "e.g. ReportPanel('train.ipynb')"
        )
    return found.expanduser().resolve()


def token_line(where: dict[str, Any]) -> str:
    """The sentence naming the host that receives the token, for the confirmation."""
    token = where.get("token_name") or "the token"
    source = f" (from {where['api_source']})" if where.get("api_source") else ""
    return f"{token} is sent to {where.get('host') or where.get('api_url')}{source}."


def framed(report_html: str) -> str:
    """The report in a sandboxed frame: no scripts, its own origin, nothing reaches the page."""
    return (
        '<iframe class="cml-nb-report" sandbox="" referrerpolicy="no-referrer" '
        'style="width:100%;height:600px;border:1px solid #d0d7de;background:white" '
        f'srcdoc="{html.escape(report_html, quote=True)}"></iframe>'
    )


class ReportPanel(w.VBox):  # type: ignore[misc]
    """Preview and Post buttons for one notebook's cml-nb report.

    Args:
        path: the notebook (default: the notebook of this kernel, where the front-end says).
        forge: ``github`` or ``gitlab`` (default: ``[tool.cml-nb]``, then detection).
        target: ``auto``, ``pr``, ``pr/N``, ``commit``, ``commit/SHA`` or ``issue/N``.
        storage: where the report's images go.
        marker: identifies the comment to update in place.

    Raises:
        UsageError: no ``path`` was given and the kernel does not know its notebook.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        forge: str | None = None,
        target: str | None = None,
        storage: str | None = None,
        marker: str | None = None,
    ) -> None:
        self.path = resolve_notebook(path)
        #: how the report names the notebook (the path as given, not the absolute one)
        self.label = str(path) if path is not None else self.path.name
        given = {"forge": forge, "target": target, "storage": storage, "marker": marker}
        self.overrides = {k: v for k, v in given.items() if v}
        self.preview_button = w.Button(description="Preview report", icon="eye")
        self.post_button = w.Button(description="Post report", icon="upload")
        self.confirm_button = w.Button(description="Post", button_style="primary")
        self.cancel_button = w.Button(description="Cancel")
        self.confirm_box = w.HBox([self.confirm_button, self.cancel_button])
        self.confirm_box.layout.display = "none"
        self.status = w.HTML()
        self.report = w.HTML()
        self.preview_button.on_click(lambda _: self.preview())
        self.post_button.on_click(lambda _: self.ask_post())
        self.confirm_button.on_click(lambda _: self.post())
        self.cancel_button.on_click(lambda _: self._ask(False))
        toolbar = w.HBox([self.preview_button, self.post_button])
        super().__init__([toolbar, self.confirm_box, self.status, self.report])
        self.add_class("cml-nb-panel")
        #: the last comment URL, once posted.
        self.url: str | None = None

    def preview(self) -> None:
        """Show the report of the notebook as last saved (refreshes on every call)."""
        result = self._run(actions.preview, self.path, self.label)
        if result is not None:
            self.report.value = framed(result["html"])
            self._say(f"Report of {self.path.name} as {self._saved()}.")

    def ask_post(self) -> None:
        """Show where the report would go, and the Post / Cancel buttons."""
        where = self._run(actions.describe_target, self.path, self.overrides)
        if where is not None:
            self._say(
                f"Post the report of {self.path.name} ({self._saved()}) to "
                f"{where['description']}? {token_line(where)}"
            )
            self._ask(True)

    def post(self) -> None:
        """Publish the report (as ``cml-nb publish`` does) and link the comment."""
        self._ask(False)
        self._say("Posting…")
        result = self._run(actions.post, self.path, self.overrides, self.label)
        if result is not None:
            self.url = result["url"]
            link = html.escape(result["url"], quote=True)
            self.status.value = (
                f'Report posted: <a href="{link}" target="_blank" rel="noopener">{link}</a>'
            )

    def _run(self, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except CmlNbError as error:
            self._ask(False)
            message = html.escape(actions.scrub(str(error)))
            self.status.value = f'<span style="color:#cf222e">cml-nb: {message}</span>'
            return None

    def _ask(self, show: bool) -> None:
        self.confirm_box.layout.display = "flex" if show else "none"

    def _say(self, text: str) -> None:
        self.status.value = html.escape(text)

    def _saved(self) -> str:
        try:
            stamp = dt.datetime.fromtimestamp(self.path.stat().st_mtime)
        except OSError:
            return "not saved yet"
        return f"saved at {stamp:%H:%M:%S} (save first to include newer outputs)"
