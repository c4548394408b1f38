"""Every setting, read once from the environment and validated.

``Settings.from_env(mapping)`` builds them from any mapping (tests pass their
own); ``load()`` reads ``os.environ`` once per process. All problems are
reported together, each naming its variable, so a misconfigured stage is fixed
in one go.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import urlsplit

from chalicelib.imaging.formats import OUTPUT_FORMATS
from chalicelib.imaging.geometry import GeometryError, RenditionSpec, parse_renditions
from chalicelib.imaging.model import ALTERNATE_FORMATS, ENGINES, GRAVITIES, default_engine

T = TypeVar("T")

DEFAULT_RENDITIONS = "thumb=256x256,medium=800x800,large=1600x1600"
DEFAULT_SUFFIXES = ".jpg,.jpeg,.png,.webp,.gif,.tif,.tiff,.bmp,.heic,.heif,.avif"
BACKENDS = ("dynamodb", "mysql")
API_AUTHS = ("none", "iam", "api_key")
# ARCHIVE_STORAGE_CLASS: where the lifecycle rule moves originals (the first is
# the default). S3 moves nothing to STANDARD_IA before it is 30 days old.
ARCHIVE_STORAGE_CLASSES = (
    "GLACIER_IR",
    "STANDARD_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# The CA bundle DB_TLS verifies the server against by default: AWS's RDS global
# bundle, shipped in the package (chalicelib/certs/README.md says from where).
RDS_CA_BUNDLE = Path(__file__).resolve().parent / "certs" / "rds-global-bundle.pem"
RDS_CA_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
# An RDS endpoint names its region: name.id.REGION.rds.amazonaws.com.
_RDS_HOST = re.compile(r"\.([a-z]{2}(?:-gov)?-[a-z]+-\d+)\.rds\.amazonaws\.com\.?$")
_RDS_CA_REGION = re.compile(r"^Amazon RDS ([a-z]{2}(?:-gov)?-[a-z]+-\d+) ")


class SettingsError(ValueError):
    """The environment does not describe a usable stage."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "image-pipeline is not configured: "
            + "; ".join(problems)
            + " (set these per stage in .chalice/config.json; see the README)"
        )


# Version of the rendition key layout (``keys.rendition_key``), part of the
# fingerprint: 2 is the injective ``NAME/KEY`` / ``NAME.ext/KEY.ext`` layout.
KEY_LAYOUT = 2
# Version of what a processed record holds beyond its renditions, part of the
# fingerprint: 2 added ``placeholder`` (and ``alternates``), so that
# ``backfill --only-missing`` gives older records theirs.
RECORD_VERSION = 2
# Defaults measured in bench/formats.py (bench/results/formats.md) on eight
# photographs: the lowest qualities at which, per rendition size, the
# alternates' mean SSIM is at least the JPEG renditions' at JPEG_QUALITY=85.
DEFAULT_ENGINE = default_engine()
DEFAULT_AVIF_QUALITY = 68
DEFAULT_WEBP_QUALITY = 84


@dataclass(frozen=True)
class Settings:
    source_bucket: str
    dest_bucket: str
    rendition_prefix: str = "resized/"
    renditions: tuple[RenditionSpec, ...] = parse_renditions(DEFAULT_RENDITIONS)
    output_format: str = "auto"
    jpeg_quality: int = 85
    formats: tuple[str, ...] = ()  # lower case, in order of preference
    avif_quality: int = DEFAULT_AVIF_QUALITY
    webp_quality: int = DEFAULT_WEBP_QUALITY
    crop_gravity: str = "centre"
    image_suffixes: tuple[str, ...] = tuple(DEFAULT_SUFFIXES.split(","))
    max_source_bytes: int = 52_428_800
    max_source_pixels: int = 50_000_000
    processing_timeout: int = 20
    strip_metadata: bool = True
    image_engine: str = DEFAULT_ENGINE
    db_backend: str = "dynamodb"
    ddb_table: str = ""
    db_host: str = ""
    db_port: int = 3306
    db_user: str = ""
    db_password: str = ""
    db_name: str = ""
    db_secret_arn: str = ""
    db_tls: bool = False
    db_tls_ca: str = str(RDS_CA_BUNDLE)
    sns_topic_arn: str = ""
    metadata_function: str = ""
    events_queue: str = ""
    api_auth: str = "none"
    cors_origin: str = ""
    uploads_enabled: bool = False
    upload_prefix: str = "uploads/"
    url_expires: int = 3600
    # Operator tools only (provision, Terraform): no rendition depends on them,
    # so they stay out of the fingerprint.
    archive_after_days: int = 0  # 0: originals are not archived
    archive_storage_class: str = ARCHIVE_STORAGE_CLASSES[0]
    rendition_base_url: str = ""  # a CDN origin for DEST_BUCKET; "" presigns
    cdn_distribution_id: str = ""  # the CloudFront distribution to invalidate on deletion

    @property
    def fingerprint(self) -> str:
        """Identifies what the rendition settings produce; stored in each record.

        It lists everything that changes rendition bytes or keys (each new
        such setting joins it: output formats, qualities, crop gravity...), so
        ``backfill --only-missing`` re-renders every record made otherwise.
        """
        text = "|".join(
            [
                f"layout={KEY_LAYOUT}",
                ",".join(map(str, self.renditions)),
                self.output_format,
                str(self.jpeg_quality),
                str(self.strip_metadata),
                self.rendition_prefix,
                self.dest_bucket,
                f"record={RECORD_VERSION}",
                ",".join(self.formats),
                f"avif={self.avif_quality},webp={self.webp_quality}",
                self.crop_gravity,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def sqs_mode(self) -> bool:
        return bool(self.events_queue)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        reader = _Reader(env)
        source = reader.text("SOURCE_BUCKET", required=True)
        backend = reader.choice("DB_BACKEND", BACKENDS, "dynamodb")
        settings = cls(
            source_bucket=source,
            dest_bucket=reader.text("DEST_BUCKET") or source,
            rendition_prefix=reader.prefix("RENDITION_PREFIX", "resized/"),
            renditions=reader.parse("RENDITIONS", DEFAULT_RENDITIONS, parse_renditions),
            output_format=reader.choice("OUTPUT_FORMAT", OUTPUT_FORMATS, "auto"),
            jpeg_quality=reader.integer("JPEG_QUALITY", 85, 1, 95),
            formats=reader.parse("FORMATS", "", _formats),
            avif_quality=reader.integer("AVIF_QUALITY", DEFAULT_AVIF_QUALITY, 1, 100),
            webp_quality=reader.integer("WEBP_QUALITY", DEFAULT_WEBP_QUALITY, 1, 100),
            crop_gravity=reader.choice("CROP_GRAVITY", GRAVITIES, "centre"),
            image_suffixes=reader.parse("IMAGE_SUFFIXES", DEFAULT_SUFFIXES, _suffixes),
            max_source_bytes=reader.integer("MAX_SOURCE_BYTES", 52_428_800, 1, 10**12),
            # Pillow itself refuses images over 89,478,485 pixels as bombs.
            max_source_pixels=reader.integer("MAX_SOURCE_PIXELS", 50_000_000, 1, 89_478_485),
            processing_timeout=reader.integer("PROCESSING_TIMEOUT", 20, 1, 900),
            strip_metadata=reader.boolean("STRIP_METADATA", True),
            image_engine=reader.choice("IMAGE_ENGINE", ENGINES, DEFAULT_ENGINE),
            db_backend=backend,
            ddb_table=reader.text("DDB_TABLE", required=backend == "dynamodb"),
            db_host=reader.text("DB_HOST", required=backend == "mysql"),
            db_port=reader.integer("DB_PORT", 3306, 1, 65535),
            db_user=reader.text("DB_USER", required=backend == "mysql"),
            db_password=reader.text("DB_PASSWORD"),
            db_name=reader.text("DB_NAME", required=backend == "mysql"),
            db_secret_arn=reader.text("DB_SECRET_ARN"),
            db_tls=reader.boolean("DB_TLS", False),
            db_tls_ca=reader.text("DB_TLS_CA") or str(RDS_CA_BUNDLE),
            sns_topic_arn=reader.text("SNS_TOPIC_ARN"),
            metadata_function=reader.text("METADATA_FUNCTION"),
            events_queue=reader.text("EVENTS_QUEUE"),
            api_auth=reader.choice("API_AUTH", API_AUTHS, "none"),
            cors_origin=reader.text("CORS_ORIGIN"),
            uploads_enabled=reader.boolean("UPLOADS_ENABLED", False),
            upload_prefix=reader.prefix("UPLOAD_PREFIX", "uploads/"),
            url_expires=reader.integer("URL_EXPIRES", 3600, 1, 604_800),
            archive_after_days=reader.integer("ARCHIVE_AFTER_DAYS", 0, 1, 36_500),
            archive_storage_class=reader.text("ARCHIVE_STORAGE_CLASS").upper()
            or ARCHIVE_STORAGE_CLASSES[0],
            rendition_base_url=reader.parse("RENDITION_BASE_URL", "", _base_url),
            cdn_distribution_id=reader.parse("CDN_DISTRIBUTION_ID", "", _distribution_id),
        )
        if settings.cdn_distribution_id and not settings.rendition_base_url:
            reader.problems.append(
                "CDN_DISTRIBUTION_ID invalidates the URLs RENDITION_BASE_URL hands out: "
                "set RENDITION_BASE_URL to that distribution's https:// origin too"
            )
        if settings.archive_storage_class not in ARCHIVE_STORAGE_CLASSES:
            reader.problems.append(
                f"ARCHIVE_STORAGE_CLASS={settings.archive_storage_class!r} must be one of "
                + ", ".join(ARCHIVE_STORAGE_CLASSES)
            )
        elif (
            settings.archive_storage_class == "STANDARD_IA" and 0 < settings.archive_after_days < 30
        ):
            reader.problems.append(
                f"ARCHIVE_AFTER_DAYS={settings.archive_after_days}: S3 moves objects to "
                "STANDARD_IA only once they are 30 days old; use 30 or more"
            )
        if settings.image_engine == "vips" and importlib.util.find_spec("pyvips") is None:
            reader.problems.append(
                "IMAGE_ENGINE=vips needs pyvips, which is not installed: "
                "pip install -r requirements.txt (pyvips-binary bundles libvips)"
            )
        if settings.db_tls:
            given = bool(reader.text("DB_TLS_CA"))
            problem = _tls_ca_problem(settings.db_tls_ca, given=given)
            if not problem and not given:
                problem = _rds_region_problem(settings.db_host)
            if problem:
                reader.problems.append(problem)
        # Either way round, an upload could land on a rendition's key (or be
        # ignored as one), so the two prefixes must not nest.
        upload, rendition = settings.upload_prefix, settings.rendition_prefix
        if upload.startswith(rendition) or rendition.startswith(upload):
            reader.problems.append(
                f"UPLOAD_PREFIX={upload!r} and RENDITION_PREFIX={rendition!r} overlap: "
                "neither may lie under the other"
            )
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


@functools.cache
def load() -> Settings:
    """The process's settings, read from ``os.environ`` on first use."""
    return Settings.from_env(os.environ)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, *, required: bool = False) -> str:
        value = self.env.get(name, "").strip()
        if required and not value:
            self.problems.append(f"{name} is required")
        return value

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self.text(name).lower() or default
        if value not in options:
            self.problems.append(f"{name}={value!r} must be one of {', '.join(options)}")
            return default
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a whole number")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name}={value} must be between {low} and {high}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name).lower()
        if not raw:
            return default
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        self.problems.append(f"{name}={raw!r} must be true or false")
        return default

    def prefix(self, name: str, default: str) -> str:
        value = self.env.get(name, default) or default
        if value.startswith("/") or not value.endswith("/"):
            self.problems.append(
                f"{name}={value!r} must be a key prefix ending in '/', like {default!r}"
            )
            return default
        return value

    def parse(self, name: str, default: str, parser: Callable[[str], T]) -> T:
        raw = self.text(name) or default
        try:
            return parser(raw)
        except (GeometryError, ValueError) as exc:
            self.problems.append(f"{name}: {exc}")
            return parser(default)


def _rds_region_problem(host: str) -> str | None:
    """Why the packaged RDS bundle cannot verify ``host`` (None: it can, or
    ``host`` is not an RDS endpoint whose region it names).

    The bundle holds the CAs of the regions that existed when it was made; an
    endpoint in a newer region would fail every connection's handshake.
    """
    match = _RDS_HOST.search(host.lower())
    if match is None or match.group(1) in rds_bundle_regions():
        return None
    return (
        f"DB_HOST is an RDS endpoint in {match.group(1)}, a region whose CAs the packaged "
        f"RDS bundle does not hold: set DB_TLS_CA to AWS's current bundle ({RDS_CA_URL}), "
        "saved in the package or on the function's filesystem"
    )


@functools.cache
def rds_bundle_regions() -> frozenset[str]:
    """The regions whose RDS CAs the packaged bundle holds (by their subjects)."""
    context = ssl.create_default_context(cafile=str(RDS_CA_BUNDLE))
    regions = set()
    for cert in context.get_ca_certs():
        subject = cast(tuple[tuple[tuple[str, str], ...], ...], cert["subject"])
        names = [value for rdn in subject for key, value in rdn if key == "commonName"]
        if names and (match := _RDS_CA_REGION.match(names[0])):
            regions.add(match.group(1))
    return frozenset(regions)


def _base_url(text: str) -> str:
    """``RENDITION_BASE_URL``: an http(s) origin, optionally with a path, and
    nothing a key could not follow (no query, fragment or credentials)."""
    if not text:
        return ""
    parts = urlsplit(text)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ValueError(
            f"{text!r} must be the origin a CDN serves DEST_BUCKET from, "
            "like https://d111111abcdef8.cloudfront.net (no query or fragment)"
        )
    return text.rstrip("/")


def _distribution_id(text: str) -> str:
    """``CDN_DISTRIBUTION_ID``: a CloudFront distribution ID, like E2QWRUHAPOMQZL."""
    if text and not re.fullmatch(r"[A-Z0-9]{13,14}", text):
        raise ValueError(
            f"{text!r} is not a CloudFront distribution ID (13 or 14 upper-case letters "
            "and digits, like E2QWRUHAPOMQZL: the Id, not the domain or the ARN)"
        )
    return text


def _formats(text: str) -> tuple[str, ...]:
    """``FORMATS``: alternates' formats, lower case, in order, each once."""
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    known = tuple(f.lower() for f in ALTERNATE_FORMATS)
    unknown = [f for f in names if f not in known]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} not among {', '.join(known)} (e.g. avif,webp)")
    if len(set(names)) != len(names):
        raise ValueError(f"{text!r} names a format twice")
    return tuple(names)


def _suffixes(text: str) -> tuple[str, ...]:
    suffixes = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    bad = [s for s in suffixes if not s.startswith(".")]
    if bad or not suffixes:
        raise ValueError("list suffixes with their dot, like .jpg,.png")
    return suffixes


def _tls_ca_problem(path: str, *, given: bool) -> str | None:
    """Why ``path`` cannot verify the MySQL server's certificate (None: it can).

    Checked here, once, so a stage with a missing or wrong bundle is refused at
    deploy time rather than failing every connection with an SSL error.
    """
    if not given and not Path(path).is_file():
        return (
            "DB_TLS=true verifies the server against the RDS global CA bundle, which is "
            "missing from chalicelib/certs/rds-global-bundle.pem: restore it from "
            f"{RDS_CA_URL}, or set DB_TLS_CA to a PEM CA bundle"
        )
    fix = f"set DB_TLS_CA to a file of PEM CA certificates (for RDS: {RDS_CA_URL})"
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        return f"DB_TLS_CA={path!r} cannot be read ({exc.strerror}): {fix}"
    if "-----BEGIN CERTIFICATE-----" not in text:
        return f"DB_TLS_CA={path!r} holds no PEM certificate: {fix}"
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        return f"DB_TLS_CA={path!r} is not a valid PEM certificate bundle ({exc}): {fix}"
    return None
