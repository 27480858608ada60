"""``s3://BUCKET/PREFIX``: images in an S3 bucket (boto3), public-read or presigned.

* ``s3://bucket/prefix`` uploads with ``ACL=public-read`` and links the object URL;
  the bucket must allow ACLs (or grant public reads by policy).
* ``s3://bucket/prefix?presign=SECONDS`` keeps objects private and links presigned
  URLs that expire after SECONDS (at most 604800, seven days); the result says when.
  Presigning with temporary credentials (a session token: SSO, an assumed role, CI
  OIDC) is refused: the URL would publish that token and stop working when it expires.

Objects are named by content hash; ``HeadObject`` finds those already there, so an
unchanged report uploads nothing. ``AWS_ENDPOINT_URL`` (or ``..._S3``) points boto3
at another endpoint, as boto3 itself documents.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from cml_nb.errors import MissingDependencyError, StorageError
from cml_nb.storage.base import AssetData, Stored

MAX_PRESIGN = 604_800


def parse(spec: str) -> tuple[str, str, int | None]:
    """``(bucket, prefix, presign seconds or None)`` from ``s3://bucket/prefix?presign=N``."""
    parts = urllib.parse.urlsplit(spec)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageError(f"bad S3 storage {spec!r}: write s3://BUCKET/PREFIX[?presign=SECONDS]")
    query = urllib.parse.parse_qs(parts.query)
    presign = None
    if "presign" in query:
        try:
            presign = int(query["presign"][0])
        except ValueError:
            raise StorageError(
                f"bad presign value in {spec!r}: give seconds, e.g. ?presign=86400"
            ) from None
        if not 0 < presign <= MAX_PRESIGN:
            raise StorageError(
                f"presign must be 1..{MAX_PRESIGN} seconds (S3's limit), not {presign}"
            )
    return parts.netloc, parts.path.strip("/"), presign


class S3Storage:
    """Images in S3."""

    name = "s3"

    def __init__(self, spec: str) -> None:
        self.bucket, self.prefix, self.presign = parse(spec)
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - boto3 is a dependency
            raise MissingDependencyError("S3 storage", "aws", "boto3") from exc
        self._session = boto3.session.Session()
        self._client = self._session.client("s3")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _check_credentials(self) -> None:
        credentials = self._session.get_credentials()
        if credentials is None:
            raise StorageError(
                "no AWS credentials for S3 storage: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        if self.presign and credentials.get_frozen_credentials().token:
            raise StorageError(
                "refusing to embed presigned S3 URLs made with temporary credentials: they would "
                "publish the session token and expire with it; use long-lived keys of a "
                "dedicated IAM user, or drop ?presign and let the bucket serve public-read objects"
            )

    def _url(self, key: str) -> str:
        if self.presign:
            return str(self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presign))  # fmt: skip
        endpoint = self._client.meta.endpoint_url.rstrip("/")
        quoted = urllib.parse.quote(key)
        if endpoint.endswith(".amazonaws.com"):  # AWS itself: virtual-hosted style
            return (
                f"https://{self.bucket}.s3.{self._client.meta.region_name}.amazonaws.com/{quoted}"
            )
        return f"{endpoint}/{self.bucket}/{quoted}"

    def store(self, assets: Mapping[str, AssetData], *, known: Mapping[str, str]) -> Stored:
        """Upload the objects S3 lacks and link every asset."""
        from botocore.exceptions import BotoCoreError, ClientError

        stored = Stored()
        if not assets:
            return stored
        self._check_credentials()
        try:
            for name, asset in assets.items():
                key = self._key(name)
                if self._exists(key):
                    stored.reused.append(name)
                else:
                    extra: dict[str, Any] = {"ContentType": asset.mime,
                                             "CacheControl": "public, max-age=31536000, immutable"}  # fmt: skip
                    if not self.presign:
                        extra["ACL"] = "public-read"
                    self._client.put_object(Bucket=self.bucket, Key=key, Body=asset.data, **extra)
                    stored.uploaded.append(name)
                stored.urls[name] = self._url(key)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(
                f"S3 refused storing report images in s3://{self.bucket}/{self.prefix} ({exc}); "
                "check the bucket name, region and that the credentials may s3:PutObject and s3:GetObject"
            ) from None
        if self.presign:
            until = datetime.now(timezone.utc) + timedelta(seconds=self.presign)
            stored.notes.append(
                f"image links expire {until:%Y-%m-%d %H:%M} UTC (presigned for {self.presign} s)"
            )
        return stored
