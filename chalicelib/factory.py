"""Assemble the pipeline and the API from settings and boto3.

Endpoints follow boto3's own configuration (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_S3``, ...), so the same code talks to AWS or to a local
emulator; nothing here names one.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast, overload

import boto3
import boto3.session
import botocore.session
from botocore.config import Config
from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader

from chalicelib.api import ImagesApi
from chalicelib.cdn import CloudFrontClient, Invalidator
from chalicelib.metadata_function import Invoke, RemoteMetadata, lambda_invoker
from chalicelib.notify import Notifier, NullNotifier, SnsNotifier
from chalicelib.pipeline import Pipeline
from chalicelib.repositories.base import Repository
from chalicelib.sandbox import MAX_WORKERS, Imaging, IsolatedImaging, isolated_imaging
from chalicelib.settings import Settings
from chalicelib.storage import S3Storage
from chalicelib.uploads import UploadsApi
from chalicelib.urls import CdnUrls, RenditionUrls, ReusedPresignedUrls

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client

# Standard retry mode backs off on throttling; whatever still fails is
# raised for Lambda to retry the whole event. Connections: the pipeline puts up
# to 8 renditions at once for each source in flight, and up to MAX_WORKERS
# sources are in flight (``pool_sizing``); a client whose pool is full opens
# and drops extra connections, with a warning each.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4}, max_pool_connections=8 * MAX_WORKERS + 8
)


class _JsonFiles(JSONFileLoader):
    """botocore's model files, decoded into dicts rather than botocore's
    ``OrderedDict``: the same keys in the same order (dicts keep it), in about
    half the time; some 15 ms of a cold start for the S3 and DynamoDB models and
    the endpoints file (1.2 MB of JSON)."""

    def load_file(self, file_path: str) -> Any:
        for extension, opener in ((".json", open), (".json.gz", gzip.open)):
            path = file_path + extension
            if os.path.isfile(path):
                with opener(path, "rb") as file:
                    return json.loads(file.read().decode("utf-8"))
        return None


class _Loader(Loader):
    """botocore's data loader, with two costs of a cold start taken out.

    Before loading any service's file (its model, its endpoint rules, boto3's
    resource model), botocore lists every service that has such a file (some
    450 directories, once for each kind of file: three times for the S3 client
    and the DynamoDB table, about 28 ms) only to check that the one asked for
    is among them, and to name them all in the error if it is not. Here that
    check looks at the one service's directory, which botocore reads next
    anyway (``list_api_versions``, cached); the full list is made only if
    something iterates it, as in that error. And the files are read by
    ``_JsonFiles``."""

    FILE_LOADER_CLASS = _JsonFiles

    def list_available_services(self, type_name: str) -> list[str]:
        return cast("list[str]", _Services(self, type_name))


class _Services(Sequence[str]):
    """The services with data of ``type_name``, listed on first use; ``in``
    answered without listing them."""

    def __init__(self, loader: _Loader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return bool(self._loader.list_api_versions(name, self._type_name))
        except DataNotFoundError:
            return False

    @functools.cached_property
    def _all(self) -> list[str]:
        return Loader.list_available_services(self._loader, self._type_name)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._all[index]

    def __len__(self) -> int:
        return len(self._all)


def session() -> boto3.session.Session:
    """A new boto3 session (as ``boto3.session.Session()``, with ``_Loader``)."""
    core = botocore.session.get_session()
    data_path = core.get_config_variable("data_path")
    core.register_component("data_loader", _Loader(_search_paths(data_path)))
    return boto3.session.Session(botocore_session=core)


def _search_paths(data_path: str | None) -> list[str]:
    """``AWS_DATA_PATH``'s directories, as botocore's ``create_loader`` reads them."""
    if not data_path:
        return []
    return [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]


# boto3 sessions are not thread-safe: what this module makes from the
# process's session is made under this lock (the clients are thread-safe).
_DEFAULT_SESSION = threading.Lock()
_SESSION: list[boto3.session.Session] = []


def _default_session() -> boto3.session.Session:
    """The process's session (call under ``_DEFAULT_SESSION``), made on first use."""
    if not _SESSION:
        _SESSION.append(session())
    return _SESSION[0]


def client(service: str, config: Config = _CONFIG) -> Any:
    """A boto3 client from the process's session (safe to call from any thread)."""
    with _DEFAULT_SESSION:
        return _default_session().client(service, config=config)  # type: ignore[call-overload]


def s3_client() -> S3Client:
    made: S3Client = client("s3", _CONFIG.merge(Config(signature_version="s3v4")))
    return made


def build_repository(settings: Settings) -> Repository:
    if settings.db_backend == "mysql":
        from chalicelib.repositories.mysql import Connector, MySQLRepository

        return MySQLRepository(Connector(mysql_connect(settings)))
    from chalicelib.repositories.dynamodb import DynamoRepository

    name = settings.ddb_table
    first = [True]

    def table() -> Table:
        """Called once per thread: boto3 sessions and resources are not
        thread-safe. The first thread (a Lambda function's only one) uses the
        process's session, which has its models loaded already; a new session
        costs about 150 ms of a cold start."""
        with _DEFAULT_SESSION:
            if first[0]:
                first[0] = False
                return _default_session().resource("dynamodb", config=_CONFIG).Table(name)
        return session().resource("dynamodb", config=_CONFIG).Table(name)

    return DynamoRepository(table)


def mysql_connect(settings: Settings, database: str | None = None) -> Callable[[], Any]:
    """A function that opens a connection to the stage's MySQL database.

    With ``DB_SECRET_ARN`` the password (and any host, port, username or
    dbname the secret holds, as RDS-managed secrets do) is read from Secrets
    Manager at each connect, so a rotated password is picked up on reconnect.
    With ``DB_TLS`` every connection is TLS, the server's certificate checked
    against ``DB_TLS_CA`` and its name against the host connected to.
    """
    from chalicelib.repositories.mysql import connect_function

    tls = None
    if settings.db_tls:
        tls = ssl.create_default_context(cafile=settings.db_tls_ca)
        tls.check_hostname, tls.verify_mode = True, ssl.CERT_REQUIRED

    def connect() -> Any:
        host, port, user = settings.db_host, settings.db_port, settings.db_user
        password, name = settings.db_password, settings.db_name
        if settings.db_secret_arn:
            secret = read_secret(settings.db_secret_arn)
            password = secret.get("password", password)
            host, user = secret.get("host", host), secret.get("username", user)
            port, name = int(secret.get("port", port)), secret.get("dbname", name)
        return connect_function(
            host, port, user, password, name if database is None else database, tls=tls
        )()

    return connect


def read_secret(arn: str) -> dict[str, Any]:
    """A Secrets Manager secret: a JSON object, or a bare string taken as the password."""
    text = client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    try:
        value = json.loads(text)
    except ValueError:
        return {"password": text}
    return value if isinstance(value, dict) else {"password": text}


def build_notifier(settings: Settings) -> Notifier:
    if not settings.sns_topic_arn:
        return NullNotifier()
    return SnsNotifier(client("sns"), settings.sns_topic_arn)


def batch_concurrency(imaging: Imaging) -> int:
    """How many messages of an SQS batch the pipeline's imaging lets run at
    once: one per worker process (a message in flight without a worker would
    only wait for one, holding its source), one for in-process imaging."""
    return imaging.concurrency if isinstance(imaging, IsolatedImaging) else 1


def build_pipeline(
    settings: Settings, invoke_metadata: Invoke | None = None, imaging: Imaging | None = None
) -> Pipeline:
    """The pipeline for ``settings``. ``invoke_metadata`` calls the child
    function (default with ``METADATA_FUNCTION``: the Lambda API); ``imaging``
    decodes the sources (default: the process's worker processes, bounded in
    time and memory, as many as ``pool_sizing`` says)."""
    remote = None
    if settings.metadata_function:
        if invoke_metadata is None:
            lambda_client = client("lambda", _CONFIG.merge(Config(read_timeout=65)))
            invoke_metadata = lambda_invoker(lambda_client, settings.metadata_function)
        remote = RemoteMetadata(invoke_metadata)
    return Pipeline(
        settings,
        S3Storage(s3_client()),
        build_repository(settings),
        build_notifier(settings),
        imaging=imaging if imaging is not None else isolated_imaging(),
        remote_metadata=remote,
        cdn=build_cdn(settings),
    )


def build_cdn(settings: Settings) -> Invalidator | None:
    """With ``CDN_DISTRIBUTION_ID``: what invalidates deleted renditions there.
    Its CloudFront client is made on the first invalidation, once per container."""
    if not settings.cdn_distribution_id:
        return None

    def cloudfront() -> CloudFrontClient:
        made: CloudFrontClient = client("cloudfront")
        return made

    return Invalidator(settings.cdn_distribution_id, cloudfront, settings.rendition_base_url)


def build_api(settings: Settings) -> ImagesApi:
    return ImagesApi(build_repository(settings), settings.source_bucket, rendition_urls(settings))


def rendition_urls(settings: Settings) -> RenditionUrls:
    """CDN URLs when ``RENDITION_BASE_URL`` is set, else presigned ones reused per ETag."""
    storage = S3Storage(s3_client())

    def presign(bucket: str, key: str) -> str:
        return storage.presigned_get(bucket, key, settings.url_expires)

    if settings.rendition_base_url:
        return CdnUrls(settings.rendition_base_url, presign)
    return ReusedPresignedUrls(presign, settings.url_expires)


def build_uploads(settings: Settings) -> UploadsApi:
    return UploadsApi(settings, S3Storage(s3_client()).presigned_post)
