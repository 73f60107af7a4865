"""Log drains end to end: a syslog receiver and an HTTPS receiver the test runs get the
app's lines (with app, process and release) and its events; a drain that is down at first
is retried; tenants cannot drain to the host."""

from __future__ import annotations

import datetime
import http.server
import json
import socket
import ssl
import threading
import time

import pytest

from tests.harness import free_port, make_repo, serving, wait_for

pytestmark = pytest.mark.timeout(600)

TICKER = {
    "Dockerfile": "FROM {image}\nCOPY index.html /www/index.html\n"
                  'CMD ["/bin/sh", "-c", "httpd -p 5000 -h /www; i=0; while true; do'
                  ' i=$((i+1)); echo tick $i; sleep 0.5; done"]\n',
    "index.html": "ticking\n",
}


class SyslogReceiver:
    """Octet-counted syslog over TCP on 127.0.0.1, started when asked."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[str] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def start(self) -> None:
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(5)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while data := conn.recv(65536):
            buf += data
            while b" " in buf:
                length, _, rest = buf.partition(b" ")
                if len(rest) < int(length):
                    break
                self.messages.append(rest[:int(length)].decode())
                buf = rest[int(length):]

    def close(self) -> None:
        self.sock.close()


def self_signed(directory, name: str = "localhost") -> tuple[str, str]:
    """A self-signed certificate (its own CA) for ``name``: (cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, pem = directory / "drain.crt", directory / "drain.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return str(crt), str(pem)


def test_drains_receive_lines_and_events(tmp_path, redis_url, docker_client, clients,
                                         busybox_image):
    crt, key = self_signed(tmp_path)
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.extend(json.loads(line) for line in body.decode().splitlines())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    https = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    https.socket = context.wrap_socket(https.socket, server_side=True)
    threading.Thread(target=https.serve_forever, daemon=True).start()
    syslog = SyslogReceiver(free_port())
    try:
        with serving(tmp_path, redis_url, docker_client, "d",
                     {"GITPAAS_DRAIN_CA_FILE": crt}) as server:
            files = {k: v.format(image=busybox_image) for k, v in TICKER.items()}
            assert server.push(make_repo(tmp_path / "tick", files), "tick").returncode == 0
            # The syslog receiver is not up yet: the drain retries until it is.
            added = server.ssh("drains:add", "tick", f"syslog+tcp://127.0.0.1:{syslog.port}")
            assert added.returncode == 0, added.stderr
            url = f"https://localhost:{https.server_address[1]}/ingest?token=s3cret"
            assert server.ssh("drains:add", "tick", url).returncode == 0
            listed = server.ssh("drains", "tick").stdout
            assert "s3cret" not in listed and "/ingest" in listed
            time.sleep(3)
            syslog.start()
            assert wait_for(lambda: any(" tick web.1 v1 - tick " in m
                                        for m in syslog.messages), 60), syslog.messages[:5]
            assert wait_for(lambda: any(r["line"].startswith("tick ") for r in received), 60)
            line = next(r for r in received if r["line"].startswith("tick "))
            assert (line["app"], line["process"], line["release"]) == ("tick", "web.1", "v1")
            # Platform events go too.
            assert server.ssh("config:set", "tick", "MOOD=happy").returncode == 0
            assert wait_for(lambda: any("config by admin" in m for m in syslog.messages), 60)
            assert not any("happy" in m for m in syslog.messages)  # no config values
            # And lines of the new release's container.
            assert wait_for(lambda: any(" tick web.1 v2 - tick " in m
                                        for m in syslog.messages), 60)
            # A tenant cannot point a drain at the host's services.
            tenant = server.add_key("tenant")
            assert server.ssh("apps:create", "mine", key=tenant).returncode == 0
            refused = server.ssh("drains:add", "mine", "syslog+tcp://127.0.0.1:6379",
                                 key=tenant)
            assert refused.returncode == 1 and "not a public address" in refused.stderr
            removed = server.ssh("drains:remove", "tick",
                                 f"syslog+tcp://127.0.0.1:{syslog.port}")
            assert removed.returncode == 0, removed.stderr
    finally:
        syslog.close()
        https.shutdown()
