"""What commands call: each service acts for one key (``access.Service``) and checks, in
each method, that the key may act on the app it names (``Access``); a change takes the
app's lock and is recorded in the audit trail where it happens. Commands parse, call one
service function and print; they do not reach the store, Docker, Redis or the edge's files
themselves (``tests/unit/test_layers.py``).

- ``access.py``: who may act on which app, the lock-and-record of a change, the trail.
- ``apps.py``: create, info, destroy, stop/start, processes, run/enter, routes, domains,
  sharing, cron jobs.
- ``domains.py``: which extra host names an app may take (the policy).
- ``config.py``: config vars, a change rolled out as a new release.
- ``releases.py``: releases; scale, restart and rollback (new releases without a push).
- ``datastores.py``: an app's MySQL or PostgreSQL database, its Redis.
- ``storage.py``: mounts (volumes; admins: host directories).
- ``gitsettings.py``: deploy branch, forced buildpack, memory and CPU limits.
- ``edge.py``: an app's settings at the edge.
- ``certs.py``: the certificates of an app's hosts.
- ``drains.py``: where an app's logs go.
- ``keys.py``: the registered SSH keys.
- ``logs.py``: recent lines and the follower of ``logs -t``.
- ``hosts.py``: the swarm's nodes.

The deployer (``deploy.py``) is the other service: it makes releases live.
"""
