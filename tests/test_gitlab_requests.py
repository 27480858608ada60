"""What one GitLab publish costs in requests (issue 12's closing note), measured against
the forge emulator with the real python-gitlab, and held so it does not creep up."""

from __future__ import annotations

from collections import Counter

from forge_emulator import scenarios

from cml_nb.publish import publish


def _cost(emulator, folder, env, tmp_path, **kw):
    emulator.exchanges.clear()
    publish(folder, env=env, cwd=tmp_path, **kw)
    return len(emulator.exchanges), Counter(f"{e.method} {e.route}" for e in emulator.exchanges)


def test_requests_per_publish_and_per_update(forge_emulator, tmp_path):
    s = scenarios.gitlab(forge_emulator)
    first, calls = _cost(forge_emulator, scenarios.bundle(tmp_path / "a", images=2), s.env,
                         tmp_path, check=True)  # fmt: skip
    # project, MR, /user, notes (before and after creating, for the race check), 2 uploads,
    # the note, the status
    assert first == 9 and calls["POST /projects/<project>/uploads"] == 2
    again, calls = _cost(forge_emulator, scenarios.bundle(tmp_path / "b", images=2, text="v2"),
                         s.env, tmp_path, check=True)  # fmt: skip
    assert again == 6 and "POST /projects/<project>/uploads" not in calls  # images reused
    # A --live update is a publish without --check: one request less.
    live, _ = _cost(forge_emulator, scenarios.bundle(tmp_path / "c", images=2, text="v3"), s.env,
                    tmp_path)  # fmt: skip
    assert live == 5
