"""The image registry of a swarm install: how release images reach every node.

With ``runtime: swarm`` the host that runs gitpaas (the manager) builds each release image
on its own Docker engine, as on one host, then pushes it to a registry that gitpaas runs
beside itself: Debian's ``docker-registry`` (the CNCF distribution registry), listening on
``registry_listen`` (an address of the private network the nodes share), with TLS from a
CA that gitpaas makes in ``<data_dir>/registry/tls`` (the nodes trust that CA only:
``/etc/docker/certs.d/<registry_listen>/ca.crt``; ``hosts:add`` prints how). Nodes pull
``<registry_listen>/<instance>/<app>:v<N>``.

Why TLS from our own CA rather than a plain-HTTP registry on a private address: Docker
pulls plain HTTP only from registries listed in ``insecure-registries`` of every engine,
the host's included, which means editing ``daemon.json`` and restarting dockerd (every
container of the host restarts with it); certificates in ``certs.d`` are read at each
pull and push, no restart; and a node verifies that the image it runs came from this
registry, not from anyone else on the network.

The registry asks for a password on every request (HTTP basic auth, its ``htpasswd``
backend): one user, ``gitpaas``, whose password gitpaas generates on first start and keeps
in ``<data_dir>/registry/auth/password`` (0600; the registry gets a bcrypt hash of it).
Without it an app's replica that reaches the registry's address could pull every tenant's
images (their code) or push over them. This host's engine sends the password with each
push; the manager's engine is given it with each service it creates (docker-py's
``X-Registry-Auth``), and hands it to the nodes that pull, so nodes keep no credential.

Old release images are deleted from the registry as they are pruned locally (a manifest
DELETE: the registry is configured with ``storage.delete.enabled``); their blobs go at the
next ``docker-registry garbage-collect <data_dir>/registry/config.yml``, which an operator
runs while ``gitpaas serve`` (and so the registry) is stopped.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from .errors import ServiceError
from .settings import Settings

log = logging.getLogger(__name__)
REGISTRY_BINARY = "docker-registry"
REGISTRY_USER = "gitpaas"
# bcrypt's cost: its least. The password is 256 random bits (no dictionary to slow down),
# and the registry checks it on every request of every push and pull.
BCRYPT_ROUNDS = 4
HOST_CERTS_DIR = Path("/etc/docker/certs.d")
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


class RegistryFiles:
    """The registry's directory: its config, TLS files and storage."""

    def __init__(self, settings: Settings) -> None:
        self.listen = settings.registry_listen
        self.root = settings.data_dir / "registry"
        self.tls = self.root / "tls"
        self.storage = self.root / "storage"
        self.config = self.root / "config.yml"
        self.auth = self.root / "auth"
        self.htpasswd = self.auth / "htpasswd"
        self.password_file = self.auth / "password"

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.crt"

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    def ensure(self) -> None:
        """Make the CA, the server certificate and the config (idempotent)."""
        if not self.listen or ":" not in self.listen:
            raise ServiceError("registry_listen must be HOST:PORT (an address the nodes"
                               " reach) when runtime is swarm")
        self.tls.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.storage.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.ca_cert.exists():
            make_ca(self.tls / "ca.key", self.ca_cert)
        server_crt, server_key = self.tls / "server.crt", self.tls / "server.key"
        if not server_crt.exists() or not _names_host(server_crt, self.host):
            make_server_cert(self.tls / "ca.key", self.ca_cert, server_key, server_crt,
                             self.host)
        self._ensure_htpasswd(self._ensure_password())
        config = {
            "version": 0.1,
            "auth": {"htpasswd": {"realm": "gitpaas-registry", "path": str(self.htpasswd)}},
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True}},
            "http": {"addr": self.listen, "tls": {"certificate": str(server_crt),
                                                  "key": str(server_key)},
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        text = yaml.safe_dump(config)
        if not self.config.exists() or self.config.read_text() != text:
            self.config.write_text(text)

    def _ensure_password(self) -> str:
        """The registry user's password, generated once (0600, never logged)."""
        self.auth.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.password_file.exists():
            _write_private(self.password_file, secrets.token_urlsafe(32).encode())
        return self.password_file.read_text().strip()

    def _ensure_htpasswd(self, password: str) -> None:
        """The registry's ``htpasswd``: the user and a bcrypt hash of the password
        (rewritten when it does not match the password file)."""
        import bcrypt

        if self.htpasswd.exists():
            user, _, hashed = self.htpasswd.read_text().strip().partition(":")
            if user == REGISTRY_USER and hashed and bcrypt.checkpw(password.encode(),
                                                                   hashed.encode()):
                return
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        _write_private(self.htpasswd, f"{REGISTRY_USER}:{hashed}\n".encode())

    def credentials(self) -> tuple[str, str]:
        """``(user, password)`` of the registry (made by ``ensure``, at ``serve``)."""
        try:
            password = self.password_file.read_text().strip()
        except OSError as exc:
            raise ServiceError("the registry has no password yet: start gitpaas serve"
                               " (runtime: swarm) first") from exc
        return REGISTRY_USER, password

    def trust_on_host(self, certs_dir: Path = HOST_CERTS_DIR) -> Path:
        """Install the CA where this host's dockerd looks for it when it pushes to
        ``registry_listen`` (read at each push: no restart). Returns the directory."""
        target = certs_dir / self.listen
        target.mkdir(parents=True, exist_ok=True)
        data = self.ca_cert.read_bytes()
        path = target / "ca.crt"
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        return target


def _names_host(cert_path: Path, host: str) -> bool:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    names = [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    return host in names + san.get_values_for_type(x509.DNSName)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600 from the start)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _write_key(path: Path, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def make_ca(key_path: Path, cert_path: Path) -> None:
    """A CA (EC P-256, ten years) that signs only the registry's certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitpaas registry CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_server_cert(ca_key_path: Path, ca_cert_path: Path, key_path: Path,
                     cert_path: Path, host: str) -> None:
    """The registry's certificate for ``host`` (an IP address or a DNS name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when ``gitpaas serve`` dies, even by SIGKILL
    (Linux ``PR_SET_PDEATHSIG``), so no orphaned registry holds the port."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)


class RegistryProcess:
    """``docker-registry serve`` as a child of ``gitpaas serve``, restarted if it dies."""

    def __init__(self, files: RegistryFiles) -> None:
        self.files = files
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Start it and wait until it answers (TLS handshake and ``/v2/``)."""
        self.files.ensure()
        log_path = self.files.root / "registry.log"
        out = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(self.files.config)],
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
        except FileNotFoundError as exc:
            raise ServiceError("docker-registry is not installed (Debian package"
                               " docker-registry)") from exc
        finally:
            out.close()
        deadline = time.monotonic() + 20
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-1500:]
                raise ServiceError(f"docker-registry did not start:\n{tail}")
            time.sleep(0.1)

    def ping(self) -> bool:
        """Whether the registry answers ``GET /v2/`` over TLS with our CA, to its user."""
        import requests

        try:
            resp = requests.get(f"https://{self.files.listen}/v2/", timeout=2,
                                verify=str(self.files.ca_cert),
                                auth=self.files.credentials())
            return resp.status_code == 200
        except (requests.RequestException, ServiceError):
            return False

    def supervise(self, interval: float = 2.0) -> threading.Event:
        """Restart the registry whenever it exits, until the returned event is set."""
        def loop() -> None:
            while not self._stop.wait(interval):
                if self.proc is not None and self.proc.poll() is not None:
                    log.warning("docker-registry exited (%s): starting it again",
                                self.proc.returncode)
                    with contextlib.suppress(ServiceError):
                        self.start()
            self.stop()

        threading.Thread(target=loop, daemon=True, name="registry").start()
        return self._stop

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Registry:
    """Pushes release images from the host's engine and deletes pruned ones."""

    def __init__(self, settings: Settings) -> None:
        self.files = RegistryFiles(settings)

    def _auth_config(self) -> dict[str, str]:
        user, password = self.files.credentials()
        return {"username": user, "password": password}

    def login(self, client: Any) -> None:
        """Give ``client`` (docker-py, in memory only) the registry's credentials: the
        services it creates then carry them (``X-Registry-Auth``) to the nodes that
        pull. The engine checks them against the registry."""
        import docker.errors

        user, password = self.files.credentials()
        try:
            client.login(username=user, password=password, registry=self.files.listen,
                         reauth=True)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager cannot log in to the registry at"
                               f" {self.files.listen}: {exc}") from exc

    def ref(self, image: str) -> str:
        """The name nodes pull ``image`` (``<instance>/<app>:vN``) by."""
        return f"{self.files.listen}/{image}"

    def push(self, client: Any, image: str) -> str:
        """Tag ``image`` for the registry and push it; return the registry name."""
        import docker.errors

        ref = self.ref(image)
        repository, _, tag = ref.rpartition(":")
        try:
            client.images.get(image).tag(repository, tag)
            for line in client.api.push(repository, tag, stream=True, decode=True,
                                        auth_config=self._auth_config()):
                if line.get("error"):
                    raise ServiceError(f"cannot push {image} to the registry:"
                                       f" {line['error']}")
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot push {image} to the registry: {exc}") from exc
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(ref)  # the local alias; the image keeps its name
        return ref

    def delete(self, image: str) -> bool:
        """Delete ``image``'s manifest from the registry; False if it was not there."""
        import requests

        repository, _, tag = image.rpartition(":")
        base = f"https://{self.files.listen}/v2/{repository}/manifests"
        verify = str(self.files.ca_cert)
        try:
            auth = self.files.credentials()
            head = requests.head(f"{base}/{tag}", headers={"Accept": MANIFEST_TYPES},
                                 timeout=10, verify=verify, auth=auth)
            digest = head.headers.get("Docker-Content-Digest")
            if head.status_code == 404 or not digest:
                return False
            resp = requests.delete(f"{base}/{digest}", timeout=10, verify=verify, auth=auth)
        except requests.RequestException as exc:
            raise ServiceError(f"the registry is unreachable: {exc}") from exc
        if resp.status_code not in (202, 404):
            raise ServiceError(f"the registry refused to delete {image}: {resp.status_code}")
        return resp.status_code == 202

    def push_base_of(self, client: Any, image: str) -> str | None:
        """Push the gitpaas base image ``image`` was built from (the recipe labels it
        inherits), if the registry lacks it; return its name. Its layers are in the
        registry already (they came with the app image): this adds its name, so that a
        node can run or build from it too."""
        import docker.errors

        from .images import BASE_REPOSITORY, HASH_LABEL, TAG_DIGITS

        try:
            labels = client.images.get(image).labels or {}
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        recipe, digest = labels.get("gitpaas.recipe"), labels.get(HASH_LABEL)
        if not recipe or not digest:
            return None
        base = f"{BASE_REPOSITORY}/{recipe}:{digest[:TAG_DIGITS]}"
        try:
            client.images.get(base)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        if not self.exists(base):
            self.push(client, base)
        return base

    def exists(self, image: str) -> bool:
        """Whether the registry holds ``image`` (``<instance>/<app>:vN``)."""
        import requests

        repository, _, tag = image.rpartition(":")
        try:
            resp = requests.head(f"https://{self.files.listen}/v2/{repository}/manifests/{tag}",
                                 headers={"Accept": MANIFEST_TYPES}, timeout=10,
                                 verify=str(self.files.ca_cert),
                                 auth=self.files.credentials())
        except requests.RequestException as exc:
            raise ServiceError(f"the registry is unreachable: {exc}") from exc
        if resp.status_code == 401:
            raise ServiceError("the registry refused gitpaas' password")
        return resp.status_code == 200
