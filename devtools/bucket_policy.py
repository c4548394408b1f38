"""Each bucket's policy, from one generator that ``provision`` and Terraform share.

A bucket has a single policy document, but more than one part of a deployment
writes statements into it (the TLS-only rule; the CDN's read access to the
renditions). Statements are owned by ``Sid``: a writer replaces the statements
whose ``Sid`` it owns and keeps every other statement as it found it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Statement = dict[str, Any]

VERSION = "2012-10-17"
TLS_ONLY_SID = "ImagePipelineDenyInsecureTransport"
CDN_READ_SID = "ImagePipelineCdnReadsRenditions"
CLOUDFRONT = "cloudfront.amazonaws.com"


@dataclass(frozen=True)
class CdnAccess:
    """A CloudFront distribution that reads ``DEST_BUCKET`` through Origin
    Access Control, and the key prefix it may read (``RENDITION_PREFIX``)."""

    distribution_arn: str
    prefix: str


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def tls_only(arn: str) -> Statement:
    """Refuse every request to the bucket and its objects made without TLS."""
    return {
        "Sid": TLS_ONLY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def cdn_read(arn: str, cdn: CdnAccess) -> Statement:
    """Let that one distribution (its OAC signs as the CloudFront service, the
    distribution named by ``AWS:SourceArn``) GET renditions and nothing else:
    every other key of the bucket answers it 403."""
    return {
        "Sid": CDN_READ_SID,
        "Effect": "Allow",
        "Principal": {"Service": CLOUDFRONT},
        "Action": "s3:GetObject",
        "Resource": f"{arn}/{cdn.prefix}*",
        "Condition": {"StringEquals": {"AWS:SourceArn": cdn.distribution_arn}},
    }


def owned_statements(arn: str, cdn: CdnAccess | None = None) -> list[Statement]:
    """The statements this project writes into the policy of the bucket ``arn``
    (with ``cdn``: the bucket that distribution serves renditions from)."""
    return [tls_only(arn), *([cdn_read(arn, cdn)] if cdn else [])]


def merge(existing: Mapping[str, Any] | None, statements: Iterable[Statement]) -> dict[str, Any]:
    """``existing`` with the statements whose ``Sid`` is among ``statements``
    replaced in place, the other new ones appended, and the rest kept."""
    ours = {statement["Sid"]: statement for statement in statements}
    found = (existing or {}).get("Statement", [])
    if isinstance(found, dict):  # a policy may hold a single statement unwrapped
        found = [found]
    merged: list[Statement] = []
    for statement in found:
        sid = statement.get("Sid")
        merged.append(ours.pop(sid) if sid in ours else statement)
    merged.extend(ours.values())
    document = dict(existing or {})
    document["Version"] = document.get("Version", VERSION)
    document["Statement"] = merged
    return document


def bucket_policy(
    arn: str, existing: Mapping[str, Any] | None = None, cdn: CdnAccess | None = None
) -> dict[str, Any]:
    """The policy of the bucket ``arn``: ``existing`` with this project's
    statements. Without ``cdn`` a CDN statement already there is kept."""
    return merge(existing, owned_statements(arn, cdn))
