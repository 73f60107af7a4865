"""What commands call: each service acts for one key and checks, in each method, that the
key may act on the app it names (``Access``). Commands parse, call one service function
and print; they do not reach the store, Docker or Redis themselves.

- ``access.py``: who may act on which app (the one place the checks live).
- ``apps.py``: create, info, destroy, stop/start, processes, run/enter, routes, domains,
  sharing.
- ``domains.py``: which extra host names an app may take.

The deployer (``deploy.py``) is the other service: it makes releases live.
"""
