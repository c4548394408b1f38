from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from chalicelib import settings as settings_module
from chalicelib.settings import RDS_CA_BUNDLE, Settings, SettingsError, _tls_ca_problem
from tests.support import layout_1_fingerprint

MINIMAL = {"SOURCE_BUCKET": "src", "DDB_TABLE": "images"}


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_env(MINIMAL)

    assert s.dest_bucket == "src"
    assert s.rendition_prefix == "resized/"
    assert [str(r) for r in s.renditions] == [
        "thumb=256x256",
        "medium=800x800",
        "large=1600x1600",
    ]
    assert (s.output_format, s.jpeg_quality, s.strip_metadata) == ("auto", 85, True)
    assert s.image_suffixes == (
        *(".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"),
        *(".heic", ".heif", ".avif"),
    )
    assert (s.max_source_bytes, s.max_source_pixels) == (52_428_800, 50_000_000)
    assert (s.db_backend, s.api_auth, s.uploads_enabled, s.url_expires) == (
        "dynamodb",
        "none",
        False,
        3600,
    )
    assert not s.sqs_mode


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(
            {"JPEG_QUALITY": "100", "OUTPUT_FORMAT": "gif", "RENDITIONS": "thumb=huge"}
        )

    message = str(raised.value)
    for fragment in (
        "SOURCE_BUCKET is required",
        "DDB_TABLE is required",
        "JPEG_QUALITY=100 must be between 1 and 95",
        "OUTPUT_FORMAT='gif' must be one of auto, jpeg, png, webp",
        "RENDITIONS: 'huge' is not a geometry",
    ):
        assert fragment in message


def test_mysql_needs_its_connection_not_a_table() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"SOURCE_BUCKET": "src", "DB_BACKEND": "mysql"})
    assert raised.value.problems == [
        "DB_HOST is required",
        "DB_USER is required",
        "DB_NAME is required",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RENDITION_PREFIX", "resized"),
        ("RENDITION_PREFIX", "/resized/"),
        ("STRIP_METADATA", "maybe"),
        ("MAX_SOURCE_BYTES", "-1"),
        ("IMAGE_SUFFIXES", "jpg,png"),
        ("RENDITIONS", "a=100,a=200"),
        ("API_AUTH", "cognito"),
        ("UPLOAD_PREFIX", "resized/up/"),
        ("IMAGE_ENGINE", "magick"),
    ],
)
def test_invalid_values_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(MINIMAL | {name: value})
    assert name in str(raised.value)


@pytest.mark.parametrize(
    ("upload", "rendition"),
    [
        ("resized/up/", "resized/"),  # uploads under renditions
        ("media/", "media/resized/"),  # renditions under uploads
        ("same/", "same/"),
    ],
)
def test_upload_and_rendition_prefixes_must_not_nest(upload: str, rendition: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(MINIMAL | {"UPLOAD_PREFIX": upload, "RENDITION_PREFIX": rendition})
    [problem] = raised.value.problems
    assert "UPLOAD_PREFIX" in problem and "RENDITION_PREFIX" in problem


def test_sibling_upload_and_rendition_prefixes_are_fine() -> None:
    s = Settings.from_env(MINIMAL | {"UPLOAD_PREFIX": "media/up/", "RENDITION_PREFIX": "media/r/"})
    assert (s.upload_prefix, s.rendition_prefix) == ("media/up/", "media/r/")


def test_fingerprint_follows_rendition_settings_only() -> None:
    base = Settings.from_env(MINIMAL)
    assert Settings.from_env(MINIMAL | {"URL_EXPIRES": "60"}).fingerprint == base.fingerprint
    assert Settings.from_env(MINIMAL | {"JPEG_QUALITY": "80"}).fingerprint != base.fingerprint
    assert Settings.from_env(MINIMAL | {"RENDITIONS": "thumb=100"}).fingerprint != base.fingerprint


def test_fingerprint_includes_the_key_layout() -> None:
    """Records rendered under the earlier key layout are not 'done' for
    backfill --only-missing, whatever the other settings."""
    for env in (MINIMAL, MINIMAL | {"RENDITIONS": "thumb=100", "OUTPUT_FORMAT": "png"}):
        settings = Settings.from_env(env)
        assert settings.fingerprint != layout_1_fingerprint(settings)
        assert settings.fingerprint == Settings.from_env(env).fingerprint


def test_events_queue_selects_sqs_mode() -> None:
    assert Settings.from_env(MINIMAL | {"EVENTS_QUEUE": "uploads"}).sqs_mode


def test_the_engine_is_vips_where_pyvips_is_installed_unless_image_engine_says() -> None:
    assert importlib.util.find_spec("pyvips") is not None  # requirements.txt installs it
    assert Settings.from_env(MINIMAL).image_engine == "vips"
    assert Settings("src", "dest").image_engine == "vips"
    assert Settings.from_env(MINIMAL | {"IMAGE_ENGINE": "pillow"}).image_engine == "pillow"


def test_vips_engine_without_pyvips_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyvips", None)  # what find_spec reports as not installed
    with pytest.raises(SettingsError, match=r"IMAGE_ENGINE=vips needs pyvips"):
        Settings.from_env(MINIMAL | {"IMAGE_ENGINE": "vips"})
    spec = importlib.util.spec_from_file_location(
        "settings_without_pyvips", settings_module.__file__
    )
    assert spec is not None and spec.loader is not None
    without = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, without)
    spec.loader.exec_module(without)  # the module as a process without pyvips imports it
    assert without.DEFAULT_ENGINE == "pillow"
    assert without.Settings.from_env(MINIMAL).image_engine == "pillow"


MYSQL = MINIMAL | {"DB_BACKEND": "mysql", "DB_HOST": "db", "DB_USER": "u", "DB_NAME": "images"}


def test_tls_is_off_by_default_and_the_ca_is_the_packaged_rds_bundle() -> None:
    s = Settings.from_env(MYSQL)
    assert s.db_tls is False
    bundle = Path(s.db_tls_ca)
    assert bundle.is_absolute()  # found whatever the working directory
    assert bundle.parts[-3:] == ("chalicelib", "certs", "rds-global-bundle.pem")


def test_tls_with_a_ca_bundle() -> None:
    certifi = pytest.importorskip("certifi")  # any real bundle of PEM CA certificates
    s = Settings.from_env(MYSQL | {"DB_TLS": "true", "DB_TLS_CA": certifi.where()})
    assert (s.db_tls, s.db_tls_ca) == (True, certifi.where())


@pytest.mark.parametrize(
    "content",
    [
        None,
        b"not a certificate\n",
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    ],
    ids=["missing", "not-pem", "corrupt-pem"],
)
def test_tls_ca_that_cannot_verify_is_refused(tmp_path: Path, content: bytes | None) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(MYSQL | {"DB_TLS": "true", "DB_TLS_CA": str(ca)})
    [problem] = raised.value.problems
    assert problem.startswith(f"DB_TLS_CA={str(ca)!r}")
    assert "set DB_TLS_CA to a file of PEM CA certificates" in problem
    # Without DB_TLS the file is not used, so not checked.
    assert not Settings.from_env(MYSQL | {"DB_TLS_CA": str(ca)}).db_tls


def test_tls_verifies_against_the_shipped_rds_bundle_by_default() -> None:
    s = Settings.from_env(
        MYSQL | {"DB_TLS": "true", "DB_HOST": "db.c9.eu-west-1.rds.amazonaws.com"}
    )
    assert (s.db_tls, s.db_tls_ca) == (True, str(RDS_CA_BUNDLE))
    assert RDS_CA_BUNDLE.is_file()


def test_an_rds_region_the_bundle_lacks_is_refused_unless_a_ca_is_given(tmp_path: Path) -> None:
    host = "db.c9.mx-central-1.rds.amazonaws.com"  # opened after the bundle was made
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(MYSQL | {"DB_TLS": "true", "DB_HOST": host})
    [problem] = raised.value.problems
    assert "mx-central-1" in problem
    assert "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in problem
    assert "DB_TLS_CA" in problem
    given = Settings.from_env(
        MYSQL | {"DB_TLS": "true", "DB_HOST": host, "DB_TLS_CA": str(RDS_CA_BUNDLE)}
    )
    assert given.db_tls


def test_a_missing_packaged_bundle_says_where_to_get_it(tmp_path: Path) -> None:
    problem = _tls_ca_problem(str(tmp_path / "rds-global-bundle.pem"), given=False)
    assert problem is not None
    assert "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in problem
    assert "chalicelib/certs/rds-global-bundle.pem" in problem
    assert "DB_TLS_CA" in problem


def test_formats_qualities_and_gravity() -> None:
    s = Settings.from_env(MINIMAL)
    assert (s.formats, s.crop_gravity) == ((), "centre")
    assert 1 <= s.avif_quality <= 100 and 1 <= s.webp_quality <= 100
    s = Settings.from_env(
        MINIMAL
        | {"FORMATS": " AVIF, webp ", "AVIF_QUALITY": "50", "WEBP_QUALITY": "70"}
        | {"CROP_GRAVITY": "attention"}
    )
    assert (s.formats, s.avif_quality, s.webp_quality) == (("avif", "webp"), 50, 70)
    assert s.crop_gravity == "attention"
    assert Settings.from_env(MINIMAL | {"FORMATS": "webp,avif"}).formats == ("webp", "avif")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FORMATS": "avif,gif"}, "FORMATS: gif not among avif, webp"),
        ({"FORMATS": "webp,webp"}, "names a format twice"),
        ({"AVIF_QUALITY": "0"}, "AVIF_QUALITY=0 must be between 1 and 100"),
        ({"WEBP_QUALITY": "101"}, "WEBP_QUALITY=101 must be between 1 and 100"),
        ({"CROP_GRAVITY": "north"}, "CROP_GRAVITY='north' must be one of centre, attention"),
    ],
)
def test_bad_format_settings_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(MINIMAL | env)
    [problem] = raised.value.problems
    assert says in problem


@pytest.mark.parametrize(
    "change",
    [
        {"FORMATS": "avif"},
        {"FORMATS": "avif,webp"},
        {"AVIF_QUALITY": "40"},
        {"WEBP_QUALITY": "60"},
        {"CROP_GRAVITY": "attention"},
    ],
)
def test_format_settings_change_the_fingerprint(change: dict[str, str]) -> None:
    """So ``backfill --only-missing`` re-renders records made without them."""
    base = Settings.from_env(MINIMAL | {"FORMATS": "webp,avif"})
    assert Settings.from_env(MINIMAL | {"FORMATS": "webp,avif"} | change).fingerprint != (
        base.fingerprint
    )


def test_presigned_urls_live_at_most_the_seven_days_s3_allows() -> None:
    assert Settings.from_env(MINIMAL | {"URL_EXPIRES": "604800"}).url_expires == 604_800
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(MINIMAL | {"URL_EXPIRES": "604801"})
    assert raised.value.problems == ["URL_EXPIRES=604801 must be between 1 and 604800"]


CDN = {"RENDITION_BASE_URL": "https://d111111abcdef8.cloudfront.net"}


def test_the_cdn_settings_are_off_by_default_and_taken_as_given() -> None:
    s = Settings.from_env(MINIMAL)
    assert (s.rendition_base_url, s.cdn_distribution_id) == ("", "")
    s = Settings.from_env(MINIMAL | CDN | {"CDN_DISTRIBUTION_ID": "E2QWRUHAPOMQZL"})
    assert (s.rendition_base_url, s.cdn_distribution_id) == (
        "https://d111111abcdef8.cloudfront.net",
        "E2QWRUHAPOMQZL",
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        # the domain, the ARN, lower case: not the distribution's Id
        (CDN | {"CDN_DISTRIBUTION_ID": "d111111abcdef8.cloudfront.net"}, "not a CloudFront"),
        (
            CDN | {"CDN_DISTRIBUTION_ID": "arn:aws:cloudfront::1:distribution/E2QWRUHAPOMQZL"},
            "the Id, not the domain or the ARN",
        ),
        (CDN | {"CDN_DISTRIBUTION_ID": "e2qwruhapomqzl"}, "not a CloudFront distribution ID"),
        # invalidating URLs the API never hands out is a mistake
        ({"CDN_DISTRIBUTION_ID": "E2QWRUHAPOMQZL"}, "set RENDITION_BASE_URL"),
    ],
)
def test_a_distribution_id_is_an_id_and_goes_with_a_base_url(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(MINIMAL | env)
    [problem] = raised.value.problems
    assert "CDN_DISTRIBUTION_ID" in problem and says in problem
