"""Storage backends: S3 (boto3 against moto's server on 127.0.0.1), the registry, GitHub's branch."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from forge_emulator import scenarios

from cml_nb.errors import ConfigError, StorageError
from cml_nb.storage import AssetData, get_storage
from cml_nb.storage import available as storages
from cml_nb.storage.s3 import object_url

ACL_REFUSED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessControlListNotSupported</Code>'
    b"<Message>The bucket does not allow ACLs</Message></Error>"
)


class OwnershipEnforced:
    """S3 refusing ACLs on a bucket with Object Ownership "bucket owner enforced", as AWS does.

    moto records the setting but still accepts ACLs; AWS answers 400
    AccessControlListNotSupported (bucket-owner-full-control excepted):
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.enforced: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        bucket, _, key = environ.get("PATH_INFO", "").lstrip("/").partition("/")
        owner = environ.get("HTTP_X_AMZ_OBJECT_OWNERSHIP")
        if environ["REQUEST_METHOD"] == "PUT" and not key and owner == "BucketOwnerEnforced":
            self.enforced.add(bucket)
        acl = environ.get("HTTP_X_AMZ_ACL")
        if (environ["REQUEST_METHOD"] == "PUT" and key and bucket in self.enforced and acl
                and acl != "bucket-owner-full-control"):  # fmt: skip
            start_response("400 Bad Request", [("Content-Type", "application/xml"),
                                               ("Content-Length", str(len(ACL_REFUSED)))])  # fmt: skip
            return [ACL_REFUSED]
        return self.app(environ, start_response)


def _moto_server() -> Any:
    from moto.moto_server import threaded_moto_server as threaded
    from werkzeug.serving import make_server

    class Server(threaded.ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = OwnershipEnforced(
                threaded.DomainDispatcherApplication(threaded.create_backend_app)
            )
            self._server = make_server(self._ip_address, self._port, app, True,
                                       request_handler=threaded.MotoRequestHandler)  # fmt: skip
            self._server_ready_event.set()
            self._server.serve_forever()

    return Server(ip_address="127.0.0.1", port=0, verbose=False)


def _public_read_policy(bucket: str) -> str:
    import json

    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]})  # fmt: skip


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1; yields its endpoint.

    Bucket ``reports`` is made as AWS makes new buckets (ACLs disabled), ``legacy``
    with ACLs enabled, ``eu-reports`` in eu-west-1 and ``reports.example.com`` dotted.
    """
    server = _moto_server()
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

    # moto keeps its backends per process: start from nothing, as a fresh account would.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"),
                           timeout=10).close()  # fmt: skip
    client = boto3.client("s3")
    client.create_bucket(Bucket="reports", ObjectOwnership="BucketOwnerEnforced")
    client.create_bucket(Bucket="legacy", ObjectOwnership="ObjectWriter")
    client.create_bucket(Bucket="reports.example.com", ObjectOwnership="BucketOwnerEnforced")
    client.create_bucket(Bucket="eu-reports", ObjectOwnership="BucketOwnerEnforced",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})  # fmt: skip
    for bucket in ("reports", "reports.example.com", "eu-reports"):
        # With ACLs disabled, reads are granted by bucket policy, as docs/publish.md says.
        client.put_bucket_policy(Bucket=bucket, Policy=_public_read_policy(bucket))
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


def _public(bucket: str, key: str) -> bool:
    import boto3

    acl = boto3.client("s3").get_object_acl(Bucket=bucket, Key=key)
    return any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in acl["Grants"])


def test_s3_new_bucket_takes_images_without_an_acl_once(s3):
    # A bucket as AWS makes it today refuses every ACL; cml-nb sends none unless asked.
    storage = get_storage("s3://reports/ci/images", forge=None)
    assets = _assets(1, 2)
    first = storage.store(assets, known={})
    assert sorted(first.uploaded) == sorted(assets) and first.reused == []
    for name, url in first.urls.items():
        assert url.startswith(f"{s3}/reports/ci/images/") and _get(url) == assets[name].data
        assert not _public("reports", f"ci/images/{name}")
    second = storage.store(assets, known={})
    assert second.uploaded == [] and sorted(second.reused) == sorted(assets)


def test_s3_acl_is_sent_only_when_asked(s3):
    assets = _assets(6)
    (name,) = assets
    get_storage("s3://legacy/pub?acl=public-read", forge=None).store(assets, known={})
    assert _public("legacy", f"pub/{name}")
    with pytest.raises(StorageError, match="ACLs disabled") as caught:
        get_storage("s3://reports/pub?acl=public-read", forge=None).store(assets, known={})
    assert "bucket policy" in str(caught.value) and "\n" not in str(caught.value)


def test_s3_acl_flag_and_bad_values(s3, forge_emulator, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cml_nb.cli import main

    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    s = scenarios.github(forge_emulator, tmp_path)
    folder = scenarios.bundle(tmp_path / "b", images=1)
    for name, value in s.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    ok = CliRunner().invoke(main, ["publish", str(folder), "--storage", "s3://legacy/r",
                                   "--s3-acl", "public-read"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    refused = CliRunner().invoke(main, ["publish", str(folder), "--storage", "s3://reports/r",
                                        "--s3-acl", "public-read"])  # fmt: skip
    assert refused.exit_code == 4 and "ACLs disabled" in refused.output
    with pytest.raises(StorageError, match="public-read"):
        get_storage("s3://reports/r?acl=world", forge=None)
    no_s3 = CliRunner().invoke(main, ["publish", str(folder), "--s3-acl", "public-read"])
    assert no_s3.exit_code == 4 and "--s3-acl" in no_s3.output


def test_s3_links_use_the_buckets_own_region(s3):
    storage = get_storage("s3://eu-reports/r", forge=None)  # the client says us-east-1
    stored = storage.store(_assets(7), known={})
    assert storage.region() == "eu-west-1"
    (url,) = stored.urls.values()
    assert _get(url) == scenarios.png(7)


def test_s3_dotted_bucket_names_link_and_presign(s3):
    stored = get_storage("s3://reports.example.com/r", forge=None).store(_assets(8), known={})
    (url,) = stored.urls.values()
    assert url.startswith(f"{s3}/reports.example.com/r/") and _get(url) == scenarios.png(8)
    signed = get_storage("s3://reports.example.com/p?presign=60", forge=None)
    (link,) = signed.store(_assets(9), known={}).urls.values()
    assert "/reports.example.com/p/" in link and _get(link) == scenarios.png(9)


@pytest.mark.parametrize(
    ("bucket", "region", "url"),
    [
        ("reports", "us-east-1", "https://reports.s3.us-east-1.amazonaws.com/k/a%20b.png"),
        ("reports", "eu-west-1", "https://reports.s3.eu-west-1.amazonaws.com/k/a%20b.png"),
        ("a.b.c", "eu-west-1", "https://s3.eu-west-1.amazonaws.com/a.b.c/k/a%20b.png"),
        ("reports", "cn-north-1", "https://reports.s3.cn-north-1.amazonaws.com.cn/k/a%20b.png"),
    ],
)
def test_object_urls_on_aws(bucket, region, url):
    assert object_url(bucket, "k/a b.png", region) == url


def test_only_images_are_uploaded(s3, forge_emulator, tmp_path, monkeypatch):
    import boto3

    page = AssetData("0" * 64 + ".png", b"<script>alert(1)</script>", "text/html")
    with pytest.raises(StorageError, match="text/html"):
        get_storage("s3://reports/x", forge=None).store({page.name: page}, known={})
    assert boto3.client("s3").list_objects_v2(Bucket="reports").get("KeyCount") == 0
    s = scenarios.gitlab(forge_emulator)
    from cml_nb.forge import get_forge

    forge = get_forge("gitlab", "grp/proj", token=s.token, api_url=forge_emulator.gitlab_api)
    with pytest.raises(StorageError, match="only images"):
        get_storage("gitlab-uploads", forge).store({page.name: page}, known={})
    assert s.repo.uploads == []


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


def test_github_branch_refuses_the_default_branch(forge_emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    from cml_nb.forge import get_forge

    s = scenarios.github(forge_emulator, tmp_path)
    forge = get_forge("github", "octo/demo", token=s.token, api_url=forge_emulator.github_api)
    before = s.repo.git.refs["heads/main"]
    with pytest.raises(StorageError, match="default branch") as caught:
        get_storage("github-branch:main", forge).store(_assets(1), known={})
    assert "github-branch:cml-nb-assets" in str(caught.value)
    assert s.repo.git.refs["heads/main"] == before


def test_github_branch_refuses_a_protected_branch(forge_emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("CML_NB_GITHUB_WRITE_INTERVAL", "0")
    from cml_nb.forge import get_forge

    s = scenarios.github(forge_emulator, tmp_path)
    before = s.repo.git.refs["heads/main"]
    s.repo.git.refs["heads/release"] = before
    s.repo.protected_branches.add("release")
    forge = get_forge("github", "octo/demo", token=s.token, api_url=forge_emulator.github_api)
    with pytest.raises(
        StorageError, match="'release', the repository's protected branch"
    ) as caught:
        get_storage("github-branch:release", forge).store(_assets(1), known={})
    assert "\n" not in str(caught.value) and "github-branch:cml-nb-assets" in str(caught.value)
    assert s.repo.git.refs["heads/release"] == before
    assert forge_emulator.spec_errors == []
    # The same branch without its rule takes the images.
    s.repo.protected_branches.discard("release")
    stored = get_storage("github-branch:release", forge).store(_assets(1), known={})
    assert len(stored.uploaded) == 1 and s.repo.git.refs["heads/release"] != before
