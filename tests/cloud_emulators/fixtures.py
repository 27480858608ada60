"""pytest fixtures for the cloud emulators: credentials the SDKs find, leak checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest


@cache
def _service_account_key() -> tuple[str, bytes]:
    """A fresh RSA key (PEM, PKCS#8) and its public half, made once per session."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture(name="gcp")
def gcp_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A fresh Compute Engine emulator, found by ADC through a service-account key file.

    The key file is what ``gcloud iam service-accounts keys create`` writes, with the
    token endpoint pointing at the emulator; ``CML_NB_GCP_ENDPOINT`` points the
    compute client there. Teardown asserts that nothing leaked and every request and
    answer matched the discovery document.
    """
    from .gcp import GcpEmulator

    private, public = _service_account_key()
    emulator = GcpEmulator(public_key_pem=public)
    key_file = tmp_path / "service-account.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": emulator.project,
                "private_key_id": "0123456789abcdef",
                "private_key": private,
                "client_email": emulator.client_email,
                "client_id": "123456789",
                "token_uri": emulator.token_uri,
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    monkeypatch.setenv("CML_NB_GCP_ENDPOINT", emulator.root)
    for name in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_COMPUTE_REGION"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield emulator
        assert emulator.spec_errors == []
        assert emulator.leaks() == {"instances": [], "disks": [], "addresses": []}
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def azure_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The Azure emulator's self-signed certificate for 127.0.0.1, and its key."""
    from .azure import make_certificate

    return make_certificate(tmp_path_factory.mktemp("azure-tls"))


@pytest.fixture(name="azure")
def azure_fixture(
    azure_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[object]:
    """A fresh Azure emulator that DefaultAzureCredential and the mgmt clients reach.

    A service principal's ``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_CLIENT_SECRET``
    (EnvironmentCredential), ``AZURE_AUTHORITY_HOST`` and ``CML_NB_AZURE_ENDPOINT`` at the
    emulator, its certificate trusted through ``REQUESTS_CA_BUNDLE``. Teardown asserts
    that no VM, NIC, IP or disk is left and every answer fit the SDK's models.
    """
    from .azure import AzureEmulator

    emulator = AzureEmulator(cert=azure_certificate)
    for name in ("AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME",
                 "AZURE_DEFAULTS_GROUP", "AZURE_DEFAULTS_LOCATION", "IDENTITY_ENDPOINT",
                 "MSI_ENDPOINT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    settings = {
        "AZURE_AUTHORITY_HOST": emulator.root,
        "AZURE_TENANT_ID": emulator.tenant,
        "AZURE_CLIENT_ID": emulator.client_id,
        "AZURE_CLIENT_SECRET": emulator.client_secret,
        "AZURE_SUBSCRIPTION_ID": emulator.subscription,
        "CML_NB_AZURE_ENDPOINT": emulator.root,
        "REQUESTS_CA_BUNDLE": str(azure_certificate[0]),
        "SSL_CERT_FILE": str(azure_certificate[0]),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    try:
        yield emulator
        assert emulator.spec_errors == []
        assert emulator.leaks() == {"vms": [], "nics": [], "ips": [], "disks": []}
    finally:
        emulator.stop()
