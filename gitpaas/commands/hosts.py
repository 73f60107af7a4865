"""hosts, hosts:add, hosts:drain, hosts:activate: the nodes of a swarm (admins;
``runtime: swarm``, docs/scaling.md). The work is the hosts service's."""

from __future__ import annotations

from ..services.hosts import Hosts
from .registry import Context, command
from .spec import Arg, Flag, Parsed


@command("hosts", Flag("--json"), admin_only=True)
def hosts(ctx: Context, p: Parsed) -> None:
    """List the swarm's nodes: role, state, availability, address and what runs there."""
    rows = Hosts(ctx.platform, ctx.key).list()
    if ctx.json_or_title(p, rows):
        return
    for r in rows:
        runs = ", ".join(f"{k}={v}" for k, v in sorted(r["runs"].items())) or "-"
        ctx.out(f"{r['hostname']:20} {r['role']:8} {r['state']:8} {r['availability']:7}"
                f" {r['address']:16} {runs}")


@command("hosts:add", admin_only=True)
def hosts_add(ctx: Context, p: Parsed) -> None:
    """Print what to install on a new node and the command that joins it to the swarm."""
    joining = Hosts(ctx.platform, ctx.key).joining()
    ctx.out("On the new host (Debian), as root (merge the daemon.json line into an existing")
    ctx.out("file: every container of the node gets no-new-privileges from it):")
    ctx.out("  mkdir -p /etc/docker")
    ctx.out(f"  echo '{joining.daemon_json}' > /etc/docker/daemon.json")
    ctx.out("  apt-get install docker.io")
    ctx.out(f"  mkdir -p /etc/docker/certs.d/{joining.registry}")
    ctx.out(f"  cat > /etc/docker/certs.d/{joining.registry}/ca.crt <<'EOF'")
    for line in joining.ca.strip().splitlines():
        ctx.out(f"  {line}")
    ctx.out("  EOF")
    ctx.out(f"  {joining.join}")
    ctx.out("Then `hosts` lists it; replicas reach it at the next deploy or scale.")
    ctx.out("An edge there too (optional, for DNS or a load balancer in front): install")
    ctx.out("gitpaas and run `gitpaas router` with the same redis_url (docs/router.md).")


@command("hosts:drain", Arg("NODE"), admin_only=True)
def hosts_drain(ctx: Context, p: Parsed) -> None:
    """Move every replica off NODE (Swarm starts them elsewhere); new ones avoid it."""
    moved = Hosts(ctx.platform, ctx.key).drain(
        p.required("NODE"), lambda hostname: ctx.write_out(f"Draining {hostname}... "))
    ctx.out("done" if moved else "still moving (see hosts)")


@command("hosts:activate", Arg("NODE"), admin_only=True)
def hosts_activate(ctx: Context, p: Parsed) -> None:
    """Let NODE run replicas again (after hosts:drain)."""
    hostname = Hosts(ctx.platform, ctx.key).activate(p.required("NODE"))
    ctx.out(f"{hostname} is active")
