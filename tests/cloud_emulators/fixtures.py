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
