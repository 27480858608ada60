"""Storage backends: S3 (boto3 against moto's server on 127.0.0.1), the registry, GitHub's branch."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from forge_emulator import scenarios

from cml_nb.errors import ConfigError, StorageError
from cml_nb.storage import AssetData, get_storage
from cml_nb.storage import available as storages


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1, with a bucket; yields its endpoint."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
                        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import boto3

    boto3.client("s3").create_bucket(Bucket="reports")
    try:
        yield endpoint
    finally:
        server.stop()


def _assets(*seeds: int) -> dict[str, AssetData]:
    import hashlib

    found = {}
    for seed in seeds:
        data = scenarios.png(seed)
        name = hashlib.sha256(data).hexdigest() + ".png"
        found[name] = AssetData(name, data, "image/png")
    return found


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def test_s3_public_read_uploads_once_and_links_readable_objects(s3):
    storage = get_storage("s3://reports/ci/images", forge=None)
    assets = _assets(1, 2)
    first = storage.store(assets, known={})
    assert sorted(first.uploaded) == sorted(assets) and first.reused == []
    for name, url in first.urls.items():
        assert url.startswith(f"{s3}/reports/ci/images/") and _get(url) == assets[name].data
    import boto3

    acl = boto3.client("s3").get_object_acl(Bucket="reports", Key=f"ci/images/{next(iter(assets))}")
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in acl["Grants"])
    second = storage.store(assets, known={})
    assert second.uploaded == [] and sorted(second.reused) == sorted(assets)


def test_s3_presigned_urls_state_their_expiry(s3):
    storage = get_storage("s3://reports/p?presign=3600", forge=None)
    stored = storage.store(_assets(3), known={})
    (url,) = stored.urls.values()
    assert "X-Amz-Expires=3600" in url or "Expires=" in url
    assert _get(url) == scenarios.png(3)
    assert "expire" in stored.notes[0]


def test_s3_refuses_presigning_with_temporary_credentials(s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLEsessiontoken" * 3)
    storage = get_storage("s3://reports/p?presign=3600", forge=None)
    with pytest.raises(StorageError, match="temporary credentials") as caught:
        storage.store(_assets(4), known={})
    assert "FwoGZXIvYXdz" not in str(caught.value)
    # Public-read links carry no credentials, so temporary ones are fine there.
    assert get_storage("s3://reports/pub", forge=None).store(_assets(4), known={}).uploaded


def test_s3_errors_are_storage_errors(s3):
    with pytest.raises(StorageError, match="s3://missing-bucket"):
        get_storage("s3://missing-bucket/x", forge=None).store(_assets(5), known={})


@pytest.mark.parametrize("spec", ["s3://", "s3://b/p?presign=abc", "s3://b/p?presign=999999999"])
def test_bad_s3_specs(spec):
    with pytest.raises(StorageError):
        get_storage(spec, forge=None)


def test_unknown_storage_lists_the_known_ones():
    with pytest.raises(ConfigError, match="github-branch"):
        get_storage("dropbox", forge=None)
    assert {"github-branch", "gitlab-uploads", "s3"} <= set(storages())


def test_storage_must_fit_the_forge(forge_emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    from cml_nb.publish import publish

    s = scenarios.github(forge_emulator, tmp_path)
    with pytest.raises(StorageError, match="needs a GitLab forge"):
        publish(scenarios.bundle(tmp_path / "b"), env=s.env, storage="gitlab-uploads")


def test_publish_with_s3_storage_links_s3(forge_emulator, tmp_path, s3, monkeypatch):
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    from cml_nb.publish import publish

    s = scenarios.github(forge_emulator, tmp_path)
    result = publish(
        scenarios.bundle(tmp_path / "b", images=1), env=s.env, storage="s3://reports/r"
    )
    assert f"{s3}/reports/r/" in s.pull.comments[0].body and len(result.uploaded) == 1
    assert "heads/cml-nb-assets" not in s.repo.git.refs


def test_github_branch_with_a_custom_branch_adds_only_new_images(
    forge_emulator, tmp_path, monkeypatch
):
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    from cml_nb.forge import get_forge

    s = scenarios.github(forge_emulator, tmp_path)
    forge = get_forge("github", "octo/demo", token=s.token, api_url=forge_emulator.github_api)
    storage = get_storage("github-branch:report-images", forge)
    first = storage.store(_assets(1, 2), known={})
    second = storage.store(_assets(1, 2, 3), known={})
    assert len(first.uploaded) == 2 and len(second.uploaded) == 1 and len(second.reused) == 2
    tip = s.repo.git.refs["heads/report-images"]
    assert len(s.repo.git.flat_files(s.repo.git.commits[tip]["tree"])) == 3
    assert "[skip ci]" in s.repo.git.commits[tip]["message"]
