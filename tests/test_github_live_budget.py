"""``--live`` within GITHUB_TOKEN's request budget (issue 12, item 7).

The live hook is driven with real notebook snapshots against the forge emulator;
requests are counted as the emulator received them.
"""

from __future__ import annotations

import base64
import logging
import struct
import time
import zlib
from collections import namedtuple
from pathlib import Path

import nbformat
import pytest
from forge_emulator import scenarios

from cml_nb.live import LivePublisher

Event = namedtuple("Event", "kind nb index")


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def _png(seed: int) -> bytes:
    """A valid 1x1 PNG, one colour per seed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = zlib.compress(b"\x00" + bytes([seed % 256, 0, 0]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel) + chunk(b"IEND", b"")
    )


def _snapshot(text: str, image: int | None = None) -> Event:
    outputs = [nbformat.v4.new_output("stream", text=text)]
    if image is not None:
        data = {"image/png": base64.b64encode(_png(image)).decode()}
        outputs.append(nbformat.v4.new_output("display_data", data=data))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("step()", execution_count=1, outputs=outputs),
                nbformat.v4.new_code_cell("more()")]  # fmt: skip
    return Event("cell_complete", nb, 0)


def _settle(live: LivePublisher, count: int, timeout: float = 20) -> None:
    """Wait until the worker has handled ``count`` snapshots."""
    deadline = time.monotonic() + timeout
    while live.published + live.unchanged < count and time.monotonic() < deadline:
        time.sleep(0.05)


def _live(s: scenarios.Scenario, tmp_path: Path, monkeypatch, **kw) -> LivePublisher:  # type: ignore[no-untyped-def]
    for name, value in s.env.items():
        monkeypatch.setenv(name, value)
    return LivePublisher(1, tmp_path / "live", target="auto", storage=None, new=False,
                         marker="train", **kw)  # fmt: skip


def test_live_updates_send_only_what_changed(forge_emulator, tmp_path, monkeypatch):
    s = scenarios.github(forge_emulator, tmp_path, permissions=scenarios.init_permissions())
    live = _live(s, tmp_path, monkeypatch, budget=1e6)  # no spacing: count requests only
    sent: list[int] = []
    plan = [_snapshot("step 1\n"), _snapshot("step 2\n"), _snapshot("step 2\n"),
            _snapshot("step 3\n", image=1)]  # fmt: skip
    try:
        for number, event in enumerate(plan, 1):
            before = len(forge_emulator.exchanges)
            live(event)
            _settle(live, number)
            sent.append(len(forge_emulator.exchanges) - before)
            time.sleep(1.05)  # past --live 1
    finally:
        live.close()
    first, text_only, unchanged, with_image = sent
    assert first == 4  # find the PR and the comment; post it; check for a concurrent twin
    assert text_only == 1  # the PATCH of the comment, nothing else
    assert unchanged == 0  # the comment would not change: no request at all
    assert with_image <= 7  # the repository, one commit of the new image, and the PATCH
    assert live.costs == [2, 1, with_image]  # what cml-nb measured from x-ratelimit-remaining
    (comment,) = s.pull.comments
    assert "step 3" in comment.body


def test_live_updates_are_spaced_to_fit_the_budget_and_say_so(forge_emulator, tmp_path,
                                                              monkeypatch, caplog):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path)
    live = _live(s, tmp_path, monkeypatch, budget=360)  # 360 requests an hour: 1 per 10 s
    try:
        with caplog.at_level(logging.WARNING, logger="cml_nb"):
            live(_snapshot("step 1\n"))
            _settle(live, 1)
            time.sleep(1.1)
            live(_snapshot("step 2\n"))  # past --live 1 but within the budget's spacing
            time.sleep(0.5)
    finally:
        live.close()
    assert live.published == 1 and len(s.pull.comments) == 1
    assert live.gap == pytest.approx(3600 * live.costs[0] / 360)
    assert "live updates spaced out to one every 20 s" in caplog.text
    assert "CML_NB_LIVE_BUDGET" in caplog.text


def test_live_updates_pause_when_the_repository_budget_runs_low(forge_emulator, tmp_path,
                                                                monkeypatch, caplog):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path)
    forge_emulator.state.tokens[s.token].rate.used = 900  # other jobs spent 900 of 1,000
    live = _live(s, tmp_path, monkeypatch, budget=1e6)
    try:
        with caplog.at_level(logging.WARNING, logger="cml_nb"):
            live(_snapshot("step 1\n"))
            _settle(live, 1)
            time.sleep(1.1)
            live(_snapshot("step 2\n"))
            time.sleep(0.5)
    finally:
        live.close()
    assert live.published == 1
    assert "live updates paused until" in caplog.text and "final report" in caplog.text


def test_live_with_new_posts_one_fresh_comment_then_edits_it(forge_emulator, tmp_path,
                                                             monkeypatch):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path)
    for name, value in s.env.items():
        monkeypatch.setenv(name, value)
    live = LivePublisher(1, tmp_path / "live", budget=1e6, target="auto", storage=None, new=True,
                         marker="train")  # fmt: skip
    try:
        for number, text in enumerate(["a\n", "b\n", "c\n"], 1):
            live(_snapshot(text))
            _settle(live, number)
            time.sleep(1.05)
    finally:
        live.close()
    (comment,) = s.pull.comments
    assert "c" in comment.body and live.published == 3


def test_a_rate_limited_live_update_is_skipped_at_once_and_pauses(forge_emulator, tmp_path,
                                                                  monkeypatch, caplog):  # fmt: skip
    s = scenarios.github(forge_emulator, tmp_path)
    live = _live(s, tmp_path, monkeypatch, budget=1e6)
    budget = forge_emulator.state.tokens[s.token].rate
    try:
        with caplog.at_level(logging.WARNING, logger="cml_nb"):
            live(_snapshot("step 1\n"))
            _settle(live, 1)
            budget.exhaust(reset_in=600, status=429)  # the next request would wait 10 minutes
            time.sleep(1.05)
            started = time.monotonic()
            live(_snapshot("step 2\n"))
            deadline = time.monotonic() + 10
            while "live report update skipped" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            waited = time.monotonic() - started
    finally:
        live.close()
    assert "live report update skipped" in caplog.text and waited < 5  # no 10-minute sleep
    assert live.paused_until == pytest.approx(budget.reset_at, abs=1)
    (comment,) = s.pull.comments
    assert "step 1" in comment.body
