"""hosts, hosts:add, hosts:drain, hosts:activate: the nodes of a swarm (admins;
``runtime: swarm``, docs/scaling.md)."""

from __future__ import annotations

import time

from ..errors import UserError
from ..runtime.swarm import Nodes, SwarmRuntime
from .registry import Context, command
from .spec import Arg, Flag, Parsed

DRAIN_WAIT = 120.0  # seconds hosts:drain waits for the node's replicas to move


def nodes_of(ctx: Context) -> Nodes:
    """The swarm's ``Nodes``, or a clear error on one host."""
    runtime: object = ctx.platform.runtime
    if not isinstance(runtime, SwarmRuntime):
        raise UserError("this server runs on one host (runtime: docker); see"
                        " docs/scaling.md to add hosts")
    return Nodes(runtime)


@command("hosts", Flag("--json"), admin_only=True)
def hosts(ctx: Context, p: Parsed) -> None:
    """List the swarm's nodes: role, state, availability, address and what runs there."""
    rows = nodes_of(ctx).list()
    if p.flag("--json"):
        ctx.json(rows)
        return
    for r in rows:
        runs = ", ".join(f"{k}={v}" for k, v in sorted(r["runs"].items())) or "-"
        ctx.out(f"{r['hostname']:20} {r['role']:8} {r['state']:8} {r['availability']:7}"
                f" {r['address']:16} {runs}")


@command("hosts:add", admin_only=True)
def hosts_add(ctx: Context, p: Parsed) -> None:
    """Print what to install on a new node and the command that joins it to the swarm."""
    join, _ = nodes_of(ctx).join_command()
    from ..registry import RegistryFiles

    files = RegistryFiles(ctx.platform.settings)
    ca = files.ca_cert.read_text() if files.ca_cert.exists() else ""
    ctx.out("On the new host (Debian), as root:")
    ctx.out("  apt-get install docker.io")
    ctx.out(f"  mkdir -p /etc/docker/certs.d/{files.listen}")
    ctx.out(f"  cat > /etc/docker/certs.d/{files.listen}/ca.crt <<'EOF'")
    for line in ca.strip().splitlines():
        ctx.out(f"  {line}")
    ctx.out("  EOF")
    ctx.out(f"  {join}")
    ctx.out("Then `hosts` lists it; replicas reach it at the next deploy or scale.")
    ctx.out("An edge there too (optional, for DNS or a load balancer in front): install")
    ctx.out("gitpaas and run `gitpaas router` with the same redis_url (docs/router.md).")


def _unroute_node(ctx: Context, address: str) -> None:
    """Take the node's replicas off every app's routes before Swarm stops them."""
    platform = ctx.platform
    apps = {t.app for t in platform.runtime.list()
            if t.process == "web" and t.host == address}
    for app in sorted(apps):
        hosts = platform.hosts(app)
        for host, frontend in platform.routes.get_many(hosts).items():
            keep = [b for b in frontend[1:] if f"//{address}:" not in b]
            if keep and len(keep) < len(frontend) - 1:
                platform.routes.swap(app, [host], keep)


@command("hosts:drain", Arg("NODE"), admin_only=True)
def hosts_drain(ctx: Context, p: Parsed) -> None:
    """Move every replica off NODE (Swarm starts them elsewhere); new ones avoid it."""
    name = p.required("NODE")
    nodes = nodes_of(ctx)
    node = nodes.find(name)
    ctx.write_out(f"Draining {node['hostname']}... ")
    _unroute_node(ctx, node["address"])
    nodes.set_availability(name, "drain")
    ctx.platform.store.record_event(ctx.key.name, "hosts:drain", None, node["hostname"])
    deadline = time.monotonic() + DRAIN_WAIT
    while time.monotonic() < deadline:
        if not nodes.find(name)["runs"]:
            ctx.out("done")
            return
        time.sleep(0.5)
    ctx.out("still moving (see hosts)")


@command("hosts:activate", Arg("NODE"), admin_only=True)
def hosts_activate(ctx: Context, p: Parsed) -> None:
    """Let NODE run replicas again (after hosts:drain)."""
    node = nodes_of(ctx).set_availability(p.required("NODE"), "active")
    ctx.platform.store.record_event(ctx.key.name, "hosts:activate", None, node["hostname"])
    ctx.out(f"{node['hostname']} is active")
