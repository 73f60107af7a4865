"""The certificates service: the TLS certificates of an app's hosts (docs/https.md).

Automatic HTTPS (``edge.certs.CertManager``) asks for and renews certificates on its own;
here a key reads their state, installs its own certificate, or removes one. Changes run
under the app's lock and are recorded.
"""

from __future__ import annotations

from ..edge.certs import HostReport
from ..edge.certstore import Bundle, HostState, covers, parse_bundle
from ..errors import InvalidInput, NotFound
from .access import Service


class Certs(Service):
    """What a key reads and changes of its apps' certificates (access checked first)."""

    def report(self, name: str) -> list[HostReport]:
        """Each host's certificate: state, issuer, expiry, and why it failed."""
        return self.platform.certs.report(self.access.app(name).name)

    def add(self, name: str, cert_data: bytes, key_data: bytes) -> tuple[list[str], Bundle]:
        """Install the chain and key (checked: ``parse_bundle``) for each of the app's hosts
        it covers: those hosts, and the bundle."""
        certs = self.platform.certs
        with self.access.change(name, "certs:add") as change:
            app = change.app
            bundle = parse_bundle(cert_data, key_data)
            hosts = [h for h in certs.hosts(app.name)
                     if any(covers(n, h) for n in bundle.info.names)]
            if not hosts:
                raise InvalidInput(
                    f"the certificate ({', '.join(bundle.info.names[:5]) or 'no names'})"
                    f" covers none of {app.name}'s hosts: {', '.join(certs.hosts(app.name))}")
            for host in hosts:
                certs.store.install(host, bundle.chain_pem, bundle.key_pem,
                                    HostState(app=app.name, source="own", status="valid"))
            change.detail = " ".join(hosts)
        return hosts, bundle

    def remove(self, name: str, host: str) -> None:
        """Remove ``host``'s certificate; automatic HTTPS, when on, asks for a new one."""
        certs = self.platform.certs
        with self.access.change(name, "certs:remove") as change:
            app = change.app
            if host not in certs.hosts(app.name):
                raise NotFound(f"{app.name} has no host {host}")
            if not certs.store.remove(host):
                raise NotFound(f"{host} has no certificate")
            change.detail = host
        certs.request(change.app.name)
