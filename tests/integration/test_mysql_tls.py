"""DB_TLS against a real MariaDB that accepts only TLS connections.

The module starts its own server on a free loopback port, with a certificate
for 127.0.0.1 and localhost issued by a CA made for the run, and
``require_secure_transport`` on, as an RDS parameter group can set it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib.factory import build_repository, mysql_connect
from chalicelib.settings import Settings
from devtools.provision import ensure_schema
from tests.integration.conftest import BASE_ENV
from tests.integration.test_repository_contract import record

MARIADB_HELP = (
    "the MySQL TLS tests start their own MariaDB server: install it with "
    "`apt-get install mariadb-server` (mariadbd and mariadb-install-db)"
)
USUAL_PLACES = ("/usr/sbin", "/usr/libexec", "/usr/local/sbin", "/usr/local/mysql/bin")
USER, PASSWORD, DATABASE = "pipeline", "tls-test-password", "image_pipeline_tls"


def find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for place in USUAL_PLACES:
        if os.access(Path(place) / name, os.X_OK):
            return str(Path(place) / name)
    return None


def write_ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA, its certificate written to ``directory/name.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def write_server_cert(
    directory: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    """``server.pem`` and ``server-key.pem``: 127.0.0.1 and localhost, issued by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca: Path  # the CA that issued the server's certificate
    other_ca: Path  # a CA that did not

    def env(self, **extra: str) -> dict[str, str]:
        return BASE_ENV | {
            "DB_BACKEND": "mysql",
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(self.port),
            "DB_USER": USER,
            "DB_PASSWORD": PASSWORD,
            "DB_NAME": DATABASE,
            **extra,
        }


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """A scratch MariaDB with TLS required; stopped at the end of the module."""
    server, install = find("mariadbd"), find("mariadb-install-db")
    if server is None or install is None:
        if os.environ.get("CI") == "true":
            pytest.fail(MARIADB_HELP)
        pytest.skip(MARIADB_HELP)
    root = tmp_path_factory.mktemp("mysql_tls")
    ca, ca_key = write_ca(root, "ca")
    write_ca(root, "other-ca")
    write_server_cert(root, ca, ca_key)
    # mariadbd refuses to run as root unless told to; as anyone else, no --user.
    as_user = ["--user=root"] if os.geteuid() == 0 else []
    datadir, sock, log = root / "data", root / "mysqld.sock", root / "error.log"
    installed = subprocess.run(
        [install, "--no-defaults", f"--datadir={datadir}", "--skip-test-db",
         "--auth-root-authentication-method=normal", *as_user],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if installed.returncode:
        raise RuntimeError(f"mariadb-install-db failed: {installed.stderr[-2000:]}")
    port = free_port()
    process = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
         f"--port={port}", "--bind-address=127.0.0.1", f"--log-error={log}",
         f"--pid-file={root / 'mysqld.pid'}", "--skip-log-bin", "--innodb-buffer-pool-size=16M",
         f"--ssl-ca={root / 'ca.pem'}", f"--ssl-cert={root / 'server.pem'}",
         f"--ssl-key={root / 'server-key.pem'}", "--require-secure-transport=ON", *as_user],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        admin = wait_for(sock, process, log)
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT ALL ON *.* TO '{USER}'@'%'")
        admin.close()
        yield TlsServer(port, root / "ca.pem", root / "other-ca.pem")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(sock: Path, process: subprocess.Popen[bytes], log: Path) -> pymysql.Connection:
    """Root's connection over the server's socket (local: no TLS needed), once it is up."""
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mariadbd exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            return pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=2)
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def tls_settings(tls_server: TlsServer) -> Settings:
    """Settings that verify the server against its CA, the schema provisioned with them."""
    settings = Settings.from_env(tls_server.env(DB_TLS="true", DB_TLS_CA=str(tls_server.ca)))
    ensure_schema(settings, report=lambda _: None)
    return settings


def test_records_round_trip_over_verified_tls(tls_settings: Settings) -> None:
    repository = build_repository(tls_settings)
    try:
        saved = record("tls/photo.jpg")
        assert repository.save(saved, None) == 1
        stored = repository.load(saved.id)
        assert stored is not None and stored.live == saved
    finally:
        repository.close()


def test_the_session_is_encrypted(tls_settings: Settings) -> None:
    connection = mysql_connect(tls_settings)()
    try:
        with connection.cursor() as cur:
            cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
            row = cur.fetchone()
        assert row is not None and row[1], "the session is not encrypted"
    finally:
        connection.close()


def test_a_server_certificate_from_another_ca_is_refused(tls_server: TlsServer) -> None:
    settings = Settings.from_env(tls_server.env(DB_TLS="true", DB_TLS_CA=str(tls_server.other_ca)))
    repository = build_repository(settings)
    try:
        with pytest.raises(pymysql.err.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
            repository.load(record("tls/photo.jpg").id)
    finally:
        repository.close()


def test_the_server_refuses_a_plain_connection(tls_server: TlsServer) -> None:
    """What makes the checks above mean something: this server accepts no
    session in the clear (MariaDB says so as "access denied")."""
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(
            host="127.0.0.1", port=tls_server.port, user=USER, password=PASSWORD,
            ssl_disabled=True, connect_timeout=5,
        )  # fmt: skip
    assert refused.value.args[0] in (1045, 3159)  # access denied, secure transport required


def test_without_db_tls_the_certificate_is_not_checked(tls_server: TlsServer) -> None:
    """DB_TLS=false leaves PyMySQL's default: TLS when the server offers it, but
    any certificate is accepted (here one from a CA the client never saw), so
    nothing stops a man in the middle. DB_TLS=true is what verifies."""
    connection = mysql_connect(Settings.from_env(tls_server.env()))()
    try:
        with connection.cursor() as cur:
            cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
            row = cur.fetchone()
        assert row is not None and row[1]
    finally:
        connection.close()
