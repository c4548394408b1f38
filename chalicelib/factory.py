"""Assemble the pipeline and the API from settings and boto3.

Endpoints follow boto3's own configuration (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_S3``, ...), so the same code talks to AWS or to a local
emulator; nothing here names one.
"""

from __future__ import annotations

import atexit
import json
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from chalicelib.api import ImagesApi
from chalicelib.cdn import CloudFrontClient, Invalidator
from chalicelib.metadata_function import Invoke, RemoteMetadata, lambda_invoker
from chalicelib.notify import Notifier, NullNotifier, SnsNotifier
from chalicelib.pipeline import Pipeline
from chalicelib.repositories.base import Repository
from chalicelib.sandbox import (
    MAX_WORKERS,
    Imaging,
    IsolatedImaging,
    WorkerPool,
    pool_sizing,
    worker_memory_bytes,
)
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


# boto3's default session is not thread-safe: what this module makes from it
# is made under this lock (the clients themselves are thread-safe).
_DEFAULT_SESSION = threading.Lock()


def client(service: str, config: Config = _CONFIG) -> Any:
    """A boto3 client from the default session (safe to call from any thread)."""
    with _DEFAULT_SESSION:
        return boto3.client(service, config=config)  # type: ignore[call-overload]


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
        default session, which has its models loaded already; a new session
        costs about 150 ms of a cold start."""
        with _DEFAULT_SESSION:
            if first[0]:
                first[0] = False
                return boto3.resource("dynamodb", config=_CONFIG).Table(name)
        return boto3.session.Session().resource("dynamodb", config=_CONFIG).Table(name)

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


_POOLS: dict[int, IsolatedImaging] = {}
_POOLS_LOCK = threading.Lock()


def isolated_imaging(workers: int | None = None) -> IsolatedImaging:
    """The process's imaging workers, shared by every pipeline the process
    builds: one pool per Lambda container, however often tests or tools build
    pipelines. As many workers as ``pool_sizing`` says (the CPUs, and on
    Lambda the function's memory), or ``workers``, each with its share of the
    memory (``worker_memory_bytes``). A worker starts when the first source
    needs it, so a function that never decodes (the removal handler) starts
    none."""
    if workers is None:
        workers = pool_sizing().workers
    with _POOLS_LOCK:
        if workers not in _POOLS:
            pool = WorkerPool(workers, worker_memory_bytes(workers))
            atexit.register(pool.close)
            _POOLS[workers] = IsolatedImaging(pool)
        return _POOLS[workers]


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
