"""What commands call: each service acts for one key and checks, in each method, that the
key may act on the app it names (``Access``). Commands parse, call one service function
and print; they do not reach the store, Docker or Redis themselves.

- ``access.py``: who may act on which app (the one place the checks live).
- ``apps.py``: create, info, destroy, stop/start, domains, sharing.
- ``datastores.py``: mysql/postgres/redis databases of an app (create, info, destroy,
  export, import), one shape for every kind.
"""
