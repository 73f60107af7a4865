"""The router's view of the settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import Settings


@dataclass(frozen=True)
class RouterConfig:
    """Everything the proxy needs, taken from :class:`Settings` once."""

    listen: tuple[str, int]
    redis_url: str
    prefix: str
    admin_listen: tuple[str, int] | None = None
    dead_ttl: float = 30.0
    cache_ttl: float = 60.0
    retries: int = 3
    connect_timeout: float = 5.0
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    backend_timeout: float = 300.0
    max_header_bytes: int = 65536
    https_listen: tuple[str, int] | None = None
    tls_dir: str = ""
    https_redirect: bool = False
    # Idle keep-alive connections kept per backend, and for how long.
    pool_size: int = 256
    pool_idle: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RouterConfig:
        """Build the router configuration from the project settings."""
        admin = settings.listen("router_admin") if settings.router_admin_listen else None
        https = settings.listen("router_https") if settings.router_https_listen else None
        return cls(
            listen=settings.listen("http"),
            redis_url=settings.redis_url,
            prefix=settings.routes_prefix,
            admin_listen=admin,
            dead_ttl=settings.router_dead_ttl,
            cache_ttl=settings.router_cache_ttl,
            retries=settings.router_retries,
            connect_timeout=settings.router_connect_timeout,
            header_timeout=settings.router_header_timeout,
            idle_timeout=settings.router_idle_timeout,
            backend_timeout=settings.router_backend_timeout,
            max_header_bytes=settings.router_max_header_bytes,
            https_listen=https,
            tls_dir=settings.router_tls_dir,
            https_redirect=settings.router_https_redirect,
        )
