"""The RDS CA bundle shipped in the package (chalicelib/certs/)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.settings import RDS_CA_BUNDLE, rds_bundle_regions


def _subject(cert: dict[str, Any]) -> dict[str, str]:
    return {k: v for rdn in cert["subject"] for k, v in rdn}


def test_every_certificate_is_an_amazon_rds_ca() -> None:
    text = RDS_CA_BUNDLE.read_text(encoding="ascii")
    certs = ssl.create_default_context(cafile=str(RDS_CA_BUNDLE)).get_ca_certs()

    assert len(certs) == text.count("-----BEGIN CERTIFICATE-----") == 115
    for cert in certs:
        subject = _subject(cert)
        assert subject["organizationName"] == "Amazon Web Services, Inc."
        assert subject["organizationalUnitName"] == "Amazon RDS"
        assert subject["commonName"].startswith("Amazon RDS ")


def test_each_current_ca_generation_is_valid_for_years_in_every_region() -> None:
    """The G1 roots (RSA2048, RSA4096, ECC384) are what RDS instances chain
    to today; each region has them, and they outlive any deployment of this."""
    certs = ssl.create_default_context(cafile=str(RDS_CA_BUNDLE)).get_ca_certs()
    in_ten_years = datetime.now(UTC) + timedelta(days=3650)
    roots: dict[str, set[str]] = {}
    for cert in certs:
        name = _subject(cert)["commonName"]
        if "Root CA" in name and name.endswith(" G1"):
            expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), UTC)
            assert expires > in_ten_years, name
            region, kind = name.split()[2], name.split()[-2]
            roots.setdefault(region, set()).add(kind)

    assert set(roots) >= rds_bundle_regions() >= {"us-east-1", "eu-west-1", "ap-southeast-2"}
    assert all({"RSA2048", "RSA4096", "ECC384"} <= kinds for kinds in roots.values())
