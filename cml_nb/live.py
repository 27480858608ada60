"""``cml-nb run --publish --live``: keep the report comment current within a request budget.

GITHUB_TOKEN may send 1,000 requests an hour per repository, shared by every job
of the repository, and content writes are limited further (docs.github.com/en/rest/
using-the-rest-api/rate-limits-for-the-rest-api). A live update therefore sends only
what changed: the first one finds the target and the comment, later ones reuse
them, store only images not stored yet, and skip the forge entirely when the
comment would not change. Each update's cost is measured (the forge's
``x-ratelimit-remaining`` before and after, else the requests cml-nb knows it sent),
and updates are spaced so their rate stays under ``CML_NB_LIVE_BUDGET`` requests an
hour (default 300); when the budget spaces them more than ``--live`` asks, the log
says so. When the forge reports few requests left, live updates pause and the final
report still goes out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("cml_nb.live")

BUDGET_ENV = "CML_NB_LIVE_BUDGET"
DEFAULT_BUDGET = 300.0
#: Pause live updates when fewer requests than this share of the limit remain.
RESERVE_SHARE = 0.2
#: A live update waits at most this long for a rate limit, then is skipped: a later
#: snapshot will do, and a long sleep could outlast the run and overwrite the final report.
LIVE_MAX_WAIT = 10.0


def live_budget(env: dict[str, str] | None = None) -> float:
    """Requests an hour live updates may spend, from ``CML_NB_LIVE_BUDGET``."""
    raw = (os.environ if env is None else env).get(BUDGET_ENV, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_BUDGET
    except ValueError:
        value = DEFAULT_BUDGET
    return value if value > 0 else DEFAULT_BUDGET


def _rate(driver: Any) -> tuple[int, int, int] | None:
    # Only the GitHub driver reads GitHub's rate-limit headers; others report nothing.
    status = getattr(driver, "rate_status", None)
    return status() if callable(status) else None


@dataclass
class LiveSession:
    """What live updates keep between one another: driver, target, comment, image URLs."""

    options: dict[str, Any]
    driver: Any = None
    target: Any = None
    comment: Any = None
    marker: str = ""
    sha: str | None = None
    urls: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    body: str = ""
    token: str | None = None
    backend: Any = None
    existing: list[Any] | None = None
    #: ``--new``: the first live update posts a fresh comment, later ones edit it.
    fresh: bool = False
    #: The forge's rate-limit state before the latest update's requests.
    before: tuple[int, int, int] | None = None
    #: Set by ``LivePublisher.close``: the final report is next, send nothing more.
    closed: bool = False

    def _start(self, report: Any, folder: Path) -> int:
        from cml_nb.forge import comments as sticky
        from cml_nb.forge.connect import connect, context_for
        from cml_nb.publish import _pick, default_marker, known_urls, parse_target
        from cml_nb.storage import get_storage

        opts = self.options
        kind, arg = parse_target(opts.get("target"))
        ctx = context_for(forge=opts.get("forge"), repo=opts.get("repo"), token=opts.get("token"),
                          api_url=opts.get("api_url"), cwd=opts.get("cwd"), env=opts.get("env"))  # fmt: skip
        self.token = ctx.token
        self.driver = connect(ctx)
        limit = getattr(self.driver, "limit_waits", None)  # GitHub's driver waits out limits
        if callable(limit):
            limit(LIVE_MAX_WAIT)
        marker = opts.get("marker")
        self.marker = sticky.marker_name(marker) if marker else default_marker(report, folder)
        self.target = _pick(self.driver, ctx, kind, arg)
        self.sha = self.target.sha or ctx.sha
        self.fresh = bool(opts.get("new"))
        self.existing = [] if self.fresh else sticky.find_existing(
            self.driver, self.target, self.marker
        )  # fmt: skip
        self.urls = known_urls(self.existing)
        storage = opts.get("storage") or self.driver.default_storage
        self.backend = get_storage(storage, self.driver)
        return 0

    def update(self, folder: Path) -> bool:
        """Publish the bundle in ``folder`` if it changes the comment; whether it was sent."""
        from cml_nb.errors import TargetNotFoundError
        from cml_nb.forge import comments as sticky
        from cml_nb.publish import render
        from cml_nb.report import load_bundle
        from cml_nb.storage import AssetData

        report = load_bundle(folder)
        if self.driver is None:
            self._start(report, folder)  # once: target, comment, stored images
        self.before = _rate(self.driver)
        missing = {n: AssetData(n, a.data, a.mime) for n, a in report.assets.items()
                   if n not in self.urls}  # fmt: skip
        if missing:
            stored = self.backend.store(missing, known=self.urls)
            self.urls.update(stored.urls)
            self.notes = sorted(set(self.notes) | set(stored.notes))
        body = render(report, urls=self.urls, marker=self.marker, sha=self.sha,
                      max_chars=self.driver.max_comment_chars, notes=self.notes,
                      secrets=[self.token])  # fmt: skip
        if body == self.body or self.closed:
            return False  # nothing new to show (or the run is over): no request
        if self.comment is not None:
            try:
                self.comment = self.driver.update_comment(self.target, self.comment, body)
            except TargetNotFoundError:  # someone deleted it meanwhile: post it again
                self.comment, self.existing, self.fresh = None, [], False
        if self.comment is None:
            done = sticky.upsert(self.driver, self.target, body, self.marker, new=self.fresh,
                                 existing=self.existing)  # fmt: skip
            self.comment, self.existing, self.fresh = done.comment, [done.comment], False
        self.body = body
        return True


class LivePublisher:
    """An ``execute.run`` hook that keeps the report comment current while a run goes on.

    After a cell completes, and at most once per ``interval`` seconds (more when the
    request budget asks), the notebook as it stands is reported and published with
    the final report's marker, so the final publish replaces it. Publishing happens on
    a worker thread that always takes the latest snapshot, so the kernel never waits
    for the forge; a failed live update is logged and skipped. Call ``close()``
    before the final publish.

    Attributes:
        published: live updates that reached the forge.
        unchanged: snapshots skipped because the comment would not change.
        costs: requests each published update cost, as measured.
    """

    def __init__(
        self, interval: float, workdir: Path, *, budget: float | None = None, **options: Any
    ) -> None:
        self.interval = max(float(interval), 1.0)
        self.budget = budget if budget is not None else live_budget()
        self.gap = self.interval
        self.workdir = Path(workdir)
        self.options = options
        self.session = LiveSession(dict(options))
        self.published = 0
        self.unchanged = 0
        self.costs: list[int] = []
        self.paused_until = 0.0
        self._last = float("-inf")
        self._pending: tuple[Any, int, int] | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="cml-nb-live", daemon=True)
        self._thread.start()

    def __call__(self, event: Any) -> None:
        """The hook: snapshot the notebook when a cell completes and the gap has passed."""
        import copy

        # A CellEvent's nb is a masked copy made on first access: not before it is due.
        live_nb = event.live_nb if hasattr(event, "live_nb") else event.nb
        if event.kind != "cell_complete" or live_nb is None:
            return
        now = time.monotonic()
        if now - self._last < self.gap or time.time() < self.paused_until:
            return
        self._last = now
        cells = event.nb.cells
        code = [i for i, c in enumerate(cells) if c.get("cell_type") == "code"]
        done = sum(1 for i in code if i <= event.index)
        with self._wake:
            self._pending = (copy.deepcopy(event.nb), done, len(code))
            self._wake.notify()

    def _work(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._pending is None:
                    return
                snapshot, self._pending = self._pending, None
            self._publish(*snapshot)

    def _publish(self, nb: Any, done: int, total: int) -> None:
        from cml_nb.errors import CmlNbError, RateLimitedError
        from cml_nb.report import build_report, write_bundle

        try:
            report = build_report([nb])
            report.title = f"{report.title} (running: {done} of {total} code cells done)"
            report.status = "running"
            folder = write_bundle(report, self.workdir / "live-report")
            sent = self.session.update(folder)
        except RateLimitedError as error:
            status = _rate(self.session.driver)
            if status is not None and status[0] == 0:
                self.paused_until = float(status[2])  # nothing left until the reset
            log.warning("live report update skipped: %s", error)
            return
        except CmlNbError as error:
            log.warning("live report update skipped: %s", error)
            return
        if not sent:
            self.unchanged += 1
            return
        self.published += 1
        self._account(self.session.before, _rate(self.session.driver))

    def _account(
        self, before: tuple[int, int, int] | None, after: tuple[int, int, int] | None
    ) -> None:
        """Measure the update's cost and space the next ones to fit the budget."""
        cost = 1  # a forge without rate headers: at least the comment edit
        if before is not None and after is not None and before[2] == after[2]:
            # Same window: what the forge counted (other jobs' requests too: cautious).
            cost = max(before[0] - after[0], 1)
        self.costs.append(cost)
        wanted = 3600.0 * cost / self.budget
        gap = max(self.interval, wanted)
        if gap > self.interval and abs(gap - self.gap) >= 1:
            log.warning(
                "live updates spaced out to one every %.0f s (the last cost %d request(s); "
                "%s caps live updates at %.0f requests an hour)", gap, cost, BUDGET_ENV,
                self.budget,
            )  # fmt: skip
        self.gap = gap
        if after is not None:
            remaining, limit, reset = after
            if limit > 0 and remaining < limit * RESERVE_SHARE:
                from cml_nb.forge.github_retry import clock

                self.paused_until = float(reset)
                log.warning(
                    "live updates paused until %s: only %d of %d GitHub requests are left this "
                    "hour (the final report will still be posted)", clock(reset), remaining,
                    limit,
                )  # fmt: skip

    def close(self) -> None:
        """Stop after the update in progress (no further live updates)."""
        with self._wake:
            self._closed = True
            self.session.closed = True
            self._pending = None
            self._wake.notify()
        self._thread.join(timeout=120)
