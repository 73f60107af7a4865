"""Issue 7, point 5: fuzz the receive-pack input, the SSH command parser and the router's
request parser. No crash, no hang past a timeout, other clients still served.

Examples are bounded for CI; ``GITPAAS_FUZZ_EXAMPLES=2000`` runs a longer campaign.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import threading
import time

import pytest
from dulwich.errors import HangupException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitpaas.commands import load_all
from gitpaas.commands.registry import COMMANDS, EXIT_INTERNAL
from gitpaas.errors import InvalidInput
from gitpaas.git import repos
from gitpaas.git.receive import serve_receive_pack
from gitpaas.ssh.server import Session
from tests.integration import packkit as pk
from tests.integration.routerkit import backends, make_config, running_router, set_route
from tests.unit.test_audit_trail import make_key
from tests.unit.test_audit_trail import platform as audit_platform  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(600)
EXAMPLES = int(os.environ.get("GITPAAS_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
HANG = 10.0  # seconds: any example running longer is a hang


def run_bounded(func, *args) -> BaseException | None:
    """Run ``func`` on a thread; fail on a hang; return what it raised (or None)."""
    box: list[BaseException | None] = [None]

    def target():
        try:
            func(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box[0] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"hung on {args!r:.200}"
    return box[0]


# -- receive-pack ---------------------------------------------------------------------

refs = st.one_of(st.sampled_from(["refs/heads/main", "refs/tags/v1", "refs/heads/../../x",
                                  "HEAD", "refs/heads/a..b", "refs/heads/x.lock"]),
                 st.text(min_size=0, max_size=40).map(lambda t: "refs/heads/" + t))
shas = st.one_of(st.just(pk.ZERO), st.text("0123456789abcdef", min_size=40, max_size=40),
                 st.text(max_size=45))
pack_bytes = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"PACK\x00\x00\x00\x02\x00\x00\x00\x01" + b),
    st.builds(lambda d, n: pk.pack([pk.blob_entry(d)], count=n), st.binary(max_size=100),
              st.integers(0, 5)),
)


@st.composite
def receive_input(draw) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    out = b""
    for i in range(draw(st.integers(0, 3))):
        line = f"{draw(shas)} {draw(shas)} {draw(refs)}"
        if i == 0:
            line += "\0" + draw(st.sampled_from(["report-status", "report-status side-band-64k",
                                                 "atomic report-status", ""]))
        out += pk.pkt(line.encode("utf-8", "surrogatepass") + b"\n")
    out += draw(st.sampled_from([pk.FLUSH, b"", b"00", b"zzzz"]))
    return out + draw(pack_bytes)


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory):
    repo = repos.ensure_repo(tmp_path_factory.mktemp("fuzz"), "fuzz", "main", 1 << 20)
    yield repo
    repo.close()


@FUZZ
@given(data=receive_input())
def test_receive_pack_survives_any_input(fuzz_repo, data):
    sent: list[bytes] = []
    stream = io.BytesIO(data)
    exc = run_bounded(serve_receive_pack, fuzz_repo, stream.read, sent.append,
                      lambda *a: None, 1 << 20)
    # The only ways out besides success: a hang-up, or malformed input said in one line.
    assert exc is None or isinstance(exc, HangupException | InvalidInput), repr(exc)
    assert all(b"refs/heads/.." not in r for r in fuzz_repo.get_refs())


# -- the SSH command parser and the registry ------------------------------------------


class FakeChannel:
    """What ``Session`` uses of a paramiko channel."""

    closed = False

    def __init__(self) -> None:
        self.out = b""
        self.err = b""

    def sendall(self, data: bytes) -> None:
        self.out += data

    def sendall_stderr(self, data: bytes) -> None:
        self.err += data

    def recv(self, n: int) -> bytes:
        return b""

    def makefile(self, mode: str):
        return io.BytesIO(b"")


def command_text():
    load_all()
    names = sorted(COMMANDS) + ["git-receive-pack", "git-upload-pack"]
    words = st.one_of(st.sampled_from(["shop", "'shop.git'", "--json", "-a", "--app", "web=2",
                                       "A=1", "--confirm", "v1", "-n", "3", "'", '"', "\\",
                                       "--no-restart", "www.example.com", "../x", "-"]),
                      st.text(max_size=12))
    structured = st.builds(lambda n, w: " ".join([n, *w]), st.sampled_from(names),
                           st.lists(words, max_size=5))
    return st.one_of(structured, st.text(max_size=60),
                     st.binary(max_size=60).map(lambda b: b.decode("latin-1")))


@pytest.fixture
def session_platform(audit_platform):  # noqa: F811 - the fixture imported above
    store = audit_platform.store
    admin = make_key(store, "admin")
    store.create_app("shop", "admin", "main")
    return audit_platform, admin


@FUZZ
@given(text=command_text())
def test_command_parser_never_fails_internally(session_platform, text):
    platform, admin = session_platform
    if text.split()[:1] in (["logs"],) and ("-t" in text or "--tail" in text):
        return  # follows the log until the client leaves: not a parser question
    channel = FakeChannel()
    box: list[int] = []
    exc = run_bounded(lambda: box.append(
        Session(platform, admin, channel).run(text.encode("utf-8", "surrogatepass"))))
    assert exc is None, repr(exc)
    assert box[0] != EXIT_INTERNAL, (text, channel.err)
    assert b"internal error" not in channel.err


# -- the router's request parser --------------------------------------------------------

methods = st.sampled_from([b"GET", b"POST", b"HEAD", b"CONNECT", b"G\x00T", b""])
header_lines = st.lists(st.one_of(
    st.sampled_from([b"Host: fuzz.example.com", b"Host:", b"Host: a\x00b",
                     b"Content-Length: 5", b"Content-Length: -1", b"Content-Length: 99999999999",
                     b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked, identity",
                     b"Connection: upgrade", b"Upgrade: websocket", b"Expect: 100-continue",
                     b" folded", b"X: " + b"a" * 5000]),
    st.binary(max_size=40)), max_size=6)


@st.composite
def http_request(draw) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    line = draw(methods) + b" " + draw(st.sampled_from([b"/", b"*", b"http://x/", b"/" * 300,
                                                       b"/%00", b""])) + b" " + draw(
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b""]))
    crlf = draw(st.sampled_from([b"\r\n", b"\n"]))
    return line + crlf + crlf.join(draw(header_lines)) + crlf + crlf + draw(
        st.binary(max_size=50))


ANSWER_WAIT = 3.0  # seconds; a request that can never complete waits for the router's timeouts


def send_raw(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, read what comes back (until close or ``ANSWER_WAIT``).

    A request whose declared body never arrives is left to the router's own timeouts
    (``router_backend_timeout``); meanwhile the steady client must still be served.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WAIT) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                piece = s.recv(65536)
            except TimeoutError:
                return b"".join(chunks)
            if not piece:
                return b"".join(chunks)
            chunks.append(piece)


@pytest.fixture(scope="module")
def fuzz_router(redis_url):
    instance = "fuzzrt"
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, "fuzz.example.com", a.url)
        yield router
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{instance}:*"):
        client.delete(key)
    client.close()


class SteadyClient(threading.Thread):
    """A keep-alive client asking all along: the fuzzing must not disturb it."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/", headers={"Host": "fuzz.example.com"})
                resp = conn.getresponse()
                resp.read()
                self.statuses.append(resp.status)
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                conn.close()
            time.sleep(0.01)
        conn.close()


@pytest.fixture
def steady(fuzz_router):
    client = SteadyClient(fuzz_router.port)
    client.start()
    yield client
    client.stop.set()
    client.join(15)
    assert client.errors == [] and client.statuses
    assert set(client.statuses) == {200}


@FUZZ
@given(data=http_request())
def test_router_survives_any_request(fuzz_router, steady, data):
    answer = send_raw(fuzz_router.port, data)
    if answer and not answer.startswith(b"<html>"):  # nginx answers HTTP/0.9 without a head
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 "), answer[:100]
        status = int(status_line.split()[1])
        # nginx: 501 for an unknown transfer coding, 505 for an HTTP version it refuses
        assert status < 500 or status in (501, 502, 503, 504, 505), answer[:200]
