"""``s3://BUCKET/PREFIX``: images in an S3 bucket (boto3), linked by URL or presigned.

* ``s3://bucket/prefix`` uploads with no ACL and links the object's URL. New buckets
  have ACLs disabled (Object Ownership "bucket owner enforced", AWS's default since
  April 2023), so readers see the images only if the bucket's policy grants public
  ``s3:GetObject`` on the prefix: anyone with the link can then see them.
* ``s3://bucket/prefix?acl=public-read`` (or ``--s3-acl public-read``) also sends that
  canned ACL, for buckets that still use ACLs; a bucket with ACLs disabled refuses it.
* ``s3://bucket/prefix?presign=SECONDS`` keeps objects private and links presigned
  URLs that expire after SECONDS (at most 604800, seven days); the result says when.
  Presigning with temporary credentials (a session token: SSO, an assumed role, CI
  OIDC) is refused: the URL would publish that token and stop working when it expires.

Links use the bucket's own region (asked with ``HeadBucket``): virtual-hosted style
``https://BUCKET.s3.REGION.amazonaws.com/KEY``, or path style
``https://s3.REGION.amazonaws.com/BUCKET/KEY`` for bucket names with dots, which
S3's wildcard certificate does not cover. Objects are named by content hash;
``HeadObject`` finds those already there, so an unchanged report uploads nothing.
``AWS_ENDPOINT_URL`` (or ``..._S3``) points boto3 at another endpoint, as boto3 itself
documents; links then use that endpoint, path style. Only image content types
(:data:`cml_nb.storage.base.IMAGE_TYPES`) are uploaded.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cml_nb.errors import MissingDependencyError, StorageError
from cml_nb.storage.base import AssetData, Stored, require_image

MAX_PRESIGN = 604_800
#: S3's canned ACLs: https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html#canned-acl
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read",
               "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control")  # fmt: skip


@dataclass(frozen=True)
class S3Spec:
    """What an ``s3://`` storage spec asks for."""

    bucket: str
    prefix: str
    presign: int | None = None
    acl: str | None = None


def parse_spec(spec: str) -> S3Spec:
    """``s3://bucket/prefix[?presign=SECONDS][&acl=CANNED]`` as an :class:`S3Spec`.

    Raises:
        StorageError: not an s3:// URL, or a bad presign or acl value.
    """
    parts = urllib.parse.urlsplit(spec)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageError(
            f"bad S3 storage {spec!r}: write s3://BUCKET/PREFIX[?presign=SECONDS][&acl=ACL]"
        )
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
    acl = query["acl"][0] if "acl" in query else None
    if acl is not None and acl not in CANNED_ACLS:
        raise StorageError(f"bad S3 ACL {acl!r}: use one of {', '.join(CANNED_ACLS)}")
    return S3Spec(parts.netloc, parts.path.strip("/"), presign, acl)


def parse(spec: str) -> tuple[str, str, int | None]:
    """``(bucket, prefix, presign seconds or None)`` of an ``s3://`` spec."""
    found = parse_spec(spec)
    return found.bucket, found.prefix, found.presign


def with_acl(spec: str, acl: str | None) -> str:
    """``spec`` with ``acl`` added (``--s3-acl``); other specs and ``None`` pass unchanged.

    Raises:
        StorageError: ``acl`` is given but the storage is not S3.
    """
    if not acl:
        return spec
    if not spec.startswith("s3://"):
        raise StorageError(f"--s3-acl {acl} needs --storage s3://BUCKET/PREFIX, not {spec!r}")
    parts = urllib.parse.urlsplit(spec)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "acl"]
    return urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode([*query, ("acl", acl)]))
    )


def object_url(bucket: str, key: str, region: str, endpoint: str | None = None) -> str:
    """The URL of an object: ``endpoint`` path style, else AWS's own host for ``region``.

    Dotted bucket names go path style on AWS: the ``*.s3.REGION.amazonaws.com``
    certificate does not match ``a.b.s3...`` (virtual-hosted style needs DNS-safe,
    dot-free names for HTTPS:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html).
    """
    quoted = urllib.parse.quote(key)
    if endpoint is not None:
        return f"{endpoint.rstrip('/')}/{bucket}/{quoted}"
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    if "." in bucket:
        return f"https://s3.{region}.{domain}/{bucket}/{quoted}"
    return f"https://{bucket}.s3.{region}.{domain}/{quoted}"


def _on_aws(endpoint: str) -> bool:
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


class S3Storage:
    """Images in S3."""

    name = "s3"

    def __init__(self, spec: str) -> None:
        found = parse_spec(spec)
        self.bucket, self.prefix, self.presign, self.acl = (
            found.bucket, found.prefix, found.presign, found.acl)  # fmt: skip
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - boto3 is a dependency
            raise MissingDependencyError("S3 storage", "aws", "boto3") from exc
        self._session = boto3.session.Session()
        self._client = self._session.client("s3")
        self._region: str | None = None

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def endpoint(self) -> str | None:
        """A non-AWS endpoint boto3 was pointed at (``AWS_ENDPOINT_URL``), else None."""
        url = str(self._client.meta.endpoint_url)
        return None if _on_aws(url) else url

    def region(self) -> str:
        """The bucket's own region, from ``HeadBucket`` (even when it answers a redirect)."""
        from botocore.exceptions import ClientError

        if self._region is None:
            try:
                answer = self._client.head_bucket(Bucket=self.bucket)
                headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            except ClientError as exc:
                # A 301 (another region) or 403 (no s3:ListBucket) still names the region;
                # without it, go on in the client's region and let the upload say what is wrong.
                headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region") or self._client.meta.region_name
            self._region = str(region or "us-east-1")
            if self._region != self._client.meta.region_name:
                self._client = self._regional_client(self._region)
        return self._region

    def _regional_client(self, region: str) -> Any:
        from botocore.config import Config

        # Presigned URLs of dotted buckets must be path style, as the object links are.
        style = "path" if "." in self.bucket else "auto"
        return self._session.client("s3", region_name=region,
                                    config=Config(s3={"addressing_style": style}))  # fmt: skip

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
                "dedicated IAM user, or drop ?presign and grant public reads by bucket policy"
            )

    def _url(self, key: str) -> str:
        if self.presign:
            return str(self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presign))  # fmt: skip
        return object_url(self.bucket, key, self.region(), self.endpoint)

    def _put(self, key: str, asset: AssetData) -> None:
        extra: dict[str, Any] = {"ContentType": require_image(asset),
                                 "CacheControl": "public, max-age=31536000, immutable"}  # fmt: skip
        if self.acl:
            extra["ACL"] = self.acl
        self._client.put_object(Bucket=self.bucket, Key=key, Body=asset.data, **extra)

    def store(self, assets: Mapping[str, AssetData], *, known: Mapping[str, str]) -> Stored:
        """Upload the objects S3 lacks and link every asset."""
        from botocore.exceptions import BotoCoreError, ClientError

        stored = Stored()
        if not assets:
            return stored
        for asset in assets.values():
            require_image(asset)  # before anything is sent
        self._check_credentials()
        try:
            self.region()
            for name, asset in assets.items():
                key = self._key(name)
                if self._exists(key):
                    stored.reused.append(name)
                else:
                    self._put(key, asset)
                    stored.uploaded.append(name)
                stored.urls[name] = self._url(key)
        except ClientError as exc:
            raise self._refused(exc) from None
        except BotoCoreError as exc:
            raise StorageError(
                f"S3 failed storing report images in s3://{self.bucket}/{self.prefix} ({exc}); "
                "check the network and AWS_ENDPOINT_URL, then retry"
            ) from None
        if self.presign:
            until = datetime.now(timezone.utc) + timedelta(seconds=self.presign)
            stored.notes.append(
                f"image links expire {until:%Y-%m-%d %H:%M} UTC (presigned for {self.presign} s)"
            )
        return stored

    def _refused(self, exc: Any) -> StorageError:
        code = exc.response.get("Error", {}).get("Code", "")
        where = f"s3://{self.bucket}/{self.prefix}"
        if code == "AccessControlListNotSupported":
            return StorageError(
                f"S3 refused ACL {self.acl!r} on {where}: the bucket has ACLs disabled (Object "
                "Ownership: bucket owner enforced, AWS's default); drop --s3-acl and grant "
                "public reads with a bucket policy, or use ?presign=SECONDS"
            )
        return StorageError(
            f"S3 refused storing report images in {where} ({exc}); check the bucket name, "
            "region and that the credentials may s3:PutObject and s3:GetObject"
        )
