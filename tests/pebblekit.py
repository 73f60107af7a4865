"""Pebble (Let's Encrypt's ACME test server, Debian package ``pebble``) for tests.

Each test starts its own Pebble on free loopback ports with a config it writes, and
``pebble-challtestsrv`` as Pebble's DNS server (``-dnsserver``): it answers every name
with 127.0.0.1, so any host name validates against the loopback HTTP port the test
names. The Debian package ships no TLS certificate for Pebble's own listener, so a
throwaway CA made here signs one; ``ca_bundle`` is that CA (the client's extra CA bundle).
Pebble's issuing root (random per start) comes from its management port (``roots``).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import require


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_cert(names: list[str], ips: list[str] = ()) -> tuple[bytes, bytes, bytes]:
    """(CA PEM, leaf PEM, leaf key PEM): a throwaway CA and a leaf for ``names``/``ips``."""
    import ipaddress

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("gitpaas test CA"))
          .issuer_name(_name("gitpaas test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i))
                                               for i in ips]
    leaf = (x509.CertificateBuilder().subject_name(_name(names[0] if names else ips[0]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (ca.public_bytes(pem), leaf.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port}: {log.read_text()[-2000:]}")


class Pebble:
    """A running Pebble plus its DNS; ``stop()`` ends both."""

    def __init__(self, workdir: Path, http_port: int, validity_seconds: int | None = None,
                 authz_reuse: int = 0) -> None:
        require(shutil.which("pebble") is not None, "pebble (Debian package pebble)")
        require(shutil.which("pebble-challtestsrv") is not None, "pebble-challtestsrv")
        workdir.mkdir(parents=True, exist_ok=True)
        ca, leaf, key = make_ca_and_cert(["localhost"], ["127.0.0.1"])
        (workdir / "ca.pem").write_bytes(ca)
        (workdir / "cert.pem").write_bytes(leaf)
        (workdir / "key.pem").write_bytes(key)
        self.ca_bundle = str(workdir / "ca.pem")
        self.port, self.mgmt_port, self.dns_port = free_port(), free_port(), free_port()
        config: dict = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(workdir / "cert.pem"), "privateKey": str(workdir / "key.pem"),
            "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if validity_seconds is not None:
            config["certificateValidityPeriod"] = validity_seconds
        (workdir / "pebble.json").write_text(json.dumps({"pebble": config}))
        self.procs: list[subprocess.Popen] = []
        dns_log = workdir / "dns.log"
        dns = subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "",
             "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}",
             "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdout=dns_log.open("wb"), stderr=subprocess.STDOUT)
        self.procs.append(dns)
        self.log = workdir / "pebble.log"
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
               "PEBBLE_AUTHZREUSE": str(authz_reuse)}
        try:
            time.sleep(0.2)
            pebble = subprocess.Popen(
                ["pebble", "-config", str(workdir / "pebble.json"),
                 "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=workdir)
            self.procs.append(pebble)
            _wait_port(self.port, pebble, self.log)
            _wait_port(self.mgmt_port, pebble, self.log)
        except BaseException:
            self.stop()
            raise

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def roots(self) -> bytes:
        """Pebble's issuing root (PEM): what clients must trust to verify issued certs."""
        ctx = ssl.create_default_context(cafile=self.ca_bundle)
        url = f"https://127.0.0.1:{self.mgmt_port}/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # noqa: S310
            return resp.read()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
