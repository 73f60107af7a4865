"""An ACME client (RFC 8555) on certbot's ``acme`` library: HTTP-01, one certificate per host.

The account key lives in ``<data_dir>/edge/acme/account.key`` (0600, ECDSA P-256); the
account is registered on first use and found again by its key afterwards. For each
challenge the key authorization goes to Redis key ``<instance>:acme:<token>`` (with a
TTL): the edge answers ``GET /.well-known/acme-challenge/<token>`` from it, for any host,
on plain HTTP, before routing.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import josepy as jose
import redis
import requests
from acme import challenges, client, errors, messages
from acme import crypto_util as acme_crypto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from requests.adapters import BaseAdapter

from ..errors import ServiceError
from ..secrets import write_private_file

log = logging.getLogger(__name__)

USER_AGENT = "gitpaas (acme-python)"
CHALLENGE_TTL = 600  # seconds a key authorization stays answerable
ORDER_TIMEOUT = 90.0


class IssueError(Exception):
    """An ACME order failed; ``str()`` is one line for ``certs`` and the audit trail."""


class ChallengeStore(Protocol):
    """Where the edge finds the answers to HTTP-01 challenges."""

    def put(self, token: str, key_authorization: str) -> None: ...

    def delete(self, token: str) -> None: ...


def challenge_key(prefix: str, token: str) -> str:
    """The Redis key the edge reads for ``/.well-known/acme-challenge/<token>``."""
    return f"{prefix}acme:{token}"


class RedisChallenges:
    """HTTP-01 answers in Redis: ``<prefix>acme:<token>`` = key authorization, with a TTL."""

    def __init__(self, redis_url: str, prefix: str, ttl: int = CHALLENGE_TTL) -> None:
        self.prefix = prefix
        self.ttl = ttl
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5,
                                           socket_connect_timeout=5, decode_responses=True)

    def put(self, token: str, key_authorization: str) -> None:
        try:
            self._redis.set(challenge_key(self.prefix, token), key_authorization, ex=self.ttl)
        except redis.RedisError as exc:
            raise ServiceError(f"cannot store the ACME challenge in Redis: {exc}") from exc

    def delete(self, token: str) -> None:
        try:
            self._redis.delete(challenge_key(self.prefix, token))
        except redis.RedisError:
            log.warning("could not delete ACME challenge %s (it expires)", token)


def load_account_key(path: Path) -> JWKEC:
    """The account key at ``path``, made (0600) on first use."""
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        write_private_file(path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return JWKEC(key=loaded)


def new_cert_key() -> bytes:
    """A fresh ECDSA P-256 key (PKCS#8 PEM) for one certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _reason(exc: BaseException) -> str:
    """One line saying why an order failed."""
    if isinstance(exc, errors.ValidationError):
        for authzr in exc.failed_authzrs:
            for chall in authzr.body.challenges:
                if chall.error is not None:
                    name = authzr.body.identifier.value
                    return f"validation of {name} failed: {_problem(chall.error)}"
        return "validation failed"
    if isinstance(exc, messages.Error):
        return _problem(exc)
    if isinstance(exc, errors.TimeoutError):
        return "the ACME server did not finish the order in time"
    if isinstance(exc, requests.RequestException):
        return f"cannot reach the ACME server: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def _problem(err: messages.Error) -> str:
    text = f"{err.code or err.typ}: {err.detail or err.title or ''}".strip()
    return " ".join(text.split())[:300]


@dataclass(frozen=True)
class Issued:
    chain_pem: bytes
    key_pem: bytes


class BundleSession(requests.Session):
    """A session checking TLS against the CA bundle ``ca_bundle`` (a path) where acme asks
    for the default (``verify=True``): acme's ``ClientNetwork.verify_ssl`` takes a bool only.
    Keeps the given transport adapters (acme's retrying ones)."""

    def __init__(self, ca_bundle: str, adapters: Mapping[str, BaseAdapter]) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle
        for prefix, adapter in adapters.items():
            self.mount(prefix, adapter)

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("verify", True) is True:
            kwargs["verify"] = self.ca_bundle
        return super().request(*args, **kwargs)


class AcmeIssuer:
    """Gets certificates from one ACME directory, answering HTTP-01 through the edge."""

    def __init__(self, directory_url: str, account_key_path: Path, challenges_: ChallengeStore,
                 email: str = "", ca_bundle: str = "", timeout: float = ORDER_TIMEOUT) -> None:
        self.directory_url = directory_url
        self.account_key_path = account_key_path
        self.challenges = challenges_
        self.email = email
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self._client: client.ClientV2 | None = None

    def _connect(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        key = load_account_key(self.account_key_path)
        net = client.ClientNetwork(key, alg=ES256, user_agent=USER_AGENT, timeout=30)
        if self.ca_bundle:
            net.session = BundleSession(self.ca_bundle, net.session.adapters)
        directory = client.ClientV2.get_directory(self.directory_url, net)
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(
            email=self.email or None, terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as exc:  # this key has an account already
            net.account = messages.RegistrationResource(uri=exc.location,
                                                        body=messages.Registration())
        self._client = acme
        return acme

    def issue(self, host: str) -> Issued:
        """A certificate for ``host`` (HTTP-01), or ``IssueError`` with the reason."""
        tokens: list[str] = []
        try:
            acme = self._connect()
            key_pem = new_cert_key()
            order = acme.new_order(acme_crypto.make_csr(key_pem, [host]))
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                challb = next((c for c in authzr.body.challenges
                               if isinstance(c.chall, challenges.HTTP01)), None)
                if challb is None:
                    raise IssueError("the ACME server offers no HTTP-01 challenge")
                response, validation = challb.response_and_validation(acme.net.key)
                token = challb.chall.encode("token")
                self.challenges.put(token, validation)
                tokens.append(token)
                acme.answer_challenge(challb, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout)
            done = acme.poll_and_finalize(order, deadline)
            return Issued(done.fullchain_pem.encode(), key_pem)
        except IssueError:
            raise
        except ServiceError as exc:
            raise IssueError(exc.message) from exc
        except (errors.Error, messages.Error, jose.errors.Error, requests.RequestException,
                ValueError) as exc:
            self._client = None if isinstance(exc, requests.RequestException) else self._client
            raise IssueError(_reason(exc)) from exc
        finally:
            for token in tokens:
                self.challenges.delete(token)
