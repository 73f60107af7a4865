"""What users are told: an app's URL, its git remote, the ssh command (from the settings).

The public names may differ from what the server listens on (a port mapping, a load
balancer): ``ssh_public_host``/``ssh_public_port`` and ``public_scheme``/``public_port``
say what clients use; each defaults from the listen settings.
"""

from __future__ import annotations

from .settings import Settings


def ssh_host_port(settings: Settings) -> tuple[str, int]:
    """Where users reach the SSH server: (host, port)."""
    return (settings.ssh_public_host or settings.domain,
            settings.ssh_public_port or settings.listen("ssh")[1])


def git_remote(settings: Settings, app: str) -> str:
    """The git remote of ``app``: ``ssh://git@HOST:PORT/APP.git``."""
    host, port = ssh_host_port(settings)
    return f"ssh://git@{host}{'' if port == 22 else f':{port}'}/{app}.git"


def ssh_command(settings: Settings) -> str:
    """How users run commands: ``ssh -p PORT git@HOST``."""
    host, port = ssh_host_port(settings)
    return f"ssh{'' if port == 22 else f' -p {port}'} git@{host}"


def edge_scheme_port(settings: Settings) -> tuple[str, int]:
    """The edge's public scheme and port (the https listener's when the scheme is https)."""
    scheme = settings.public_scheme or "http"
    if settings.public_port:
        return scheme, settings.public_port
    if scheme == "https" and settings.router_https_listen:
        return scheme, int(settings.router_https_listen.rpartition(":")[2])
    return scheme, settings.listen("http")[1] if scheme == "http" else 443


def app_url(settings: Settings, app: str) -> str:
    """The URL of ``app`` as a browser would use it: ``http://APP.DOMAIN[:PORT]/``."""
    scheme, port = edge_scheme_port(settings)
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{app}.{settings.domain}{'' if port == default else f':{port}'}/"


def default_host(settings: Settings, app: str) -> str:
    """The host every app answers at: ``<app>.<domain>``."""
    return f"{app}.{settings.domain}"


def app_hosts(settings: Settings, app: str, domains: list[str]) -> list[str]:
    """Every host name ``app`` answers at: its default host, then its ``domains``."""
    return [default_host(settings, app), *domains]
