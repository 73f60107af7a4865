"""The edge's configuration: rendered from the settings into nginx.conf and conf.lua."""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import InvalidInput
from ..settings import Settings

LUA_DIR = Path(__file__).resolve().parent / "lua"
MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so",
           "/usr/lib/nginx/modules/ngx_http_lua_module.so")
LUA_RESTY = "/usr/share/lua/5.1"
SIZE = re.compile(r"^(\d+)([kmg]?)$")


def parse_size(value: str | int) -> int:
    """``64m`` -> bytes (nginx's units: k, m, g); ``0``: no limit."""
    match = SIZE.match(str(value).strip().lower())
    if not match:
        raise InvalidInput(f"invalid size {value!r} (use a number with k, m or g)")
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]


_D = Settings()  # the defaults of every setting


@dataclass(frozen=True)
class EdgeConfig:
    """Everything nginx needs; ``directory`` holds its config, pid file, logs and certs."""

    directory: Path
    listen: tuple[str, int]
    redis_url: str
    prefix: str
    https_listen: tuple[str, int] | None = None
    admin_listen: tuple[str, int] | None = None
    # Defaults: the settings' own (one place: settings.py), for edges built without them.
    workers: int = _D.router_workers
    dead_ttl: float = _D.router_dead_ttl
    cache_ttl: float = _D.router_cache_ttl
    miss_ttl: float = 1.0
    retries: int = _D.router_retries
    connect_timeout: float = _D.router_connect_timeout
    header_timeout: float = _D.router_header_timeout
    idle_timeout: float = _D.router_idle_timeout
    backend_timeout: float = _D.router_backend_timeout
    max_header_bytes: int = _D.router_max_header_bytes
    https_redirect: bool = _D.router_https_redirect
    access_log: bool = _D.router_access_log
    access_log_max_bytes: int = parse_size(_D.edge_access_log_max_size)
    client_max_body_size: int = parse_size(_D.edge_client_max_body_size)
    max_body_size: int = parse_size(_D.edge_max_body_size)
    limit_conn: int = _D.edge_limit_conn
    limit_rate: int = _D.edge_limit_rate
    limit_burst: int = _D.edge_limit_burst
    limit_exempt: str = _D.edge_limit_exempt
    # The user nginx's workers run as ("": the user gitpaas runs as). They read the
    # certificates and write request-body temp files under ``directory``.
    user: str = _D.edge_user
    # nice value of the workers (root only): below gitpaas' own 0.
    worker_priority: int = -5
    # The data plane's Lua modules (the ones this gitpaas ships; tests point it elsewhere).
    lua_dir: Path = LUA_DIR

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeConfig:
        """The edge of this install (``<data_dir>/edge``)."""
        s = settings
        return cls(
            directory=s.data_dir / "edge",
            listen=s.listen("http"),
            redis_url=s.redis_url,
            prefix=s.routes_prefix,
            https_listen=s.listen("router_https") if s.router_https_listen else None,
            admin_listen=s.listen("router_admin") if s.router_admin_listen else None,
            workers=s.router_workers,
            dead_ttl=s.router_dead_ttl,
            cache_ttl=s.router_cache_ttl,
            retries=s.router_retries,
            connect_timeout=s.router_connect_timeout,
            header_timeout=s.router_header_timeout,
            idle_timeout=s.router_idle_timeout,
            backend_timeout=s.router_backend_timeout,
            max_header_bytes=s.router_max_header_bytes,
            https_redirect=s.router_https_redirect,
            access_log=s.router_access_log,
            access_log_max_bytes=parse_size(s.edge_access_log_max_size),
            client_max_body_size=parse_size(s.edge_client_max_body_size),
            max_body_size=parse_size(s.edge_max_body_size),
            limit_conn=s.edge_limit_conn,
            limit_rate=s.edge_limit_rate,
            limit_burst=s.edge_limit_burst,
            limit_exempt=s.edge_limit_exempt,
            user=s.edge_user,
        )

    # -- paths ----------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.directory / "nginx.conf"

    @property
    def lua_conf_path(self) -> Path:
        return self.directory / "conf.lua"

    @property
    def pid_path(self) -> Path:
        return self.directory / "nginx.pid"

    @property
    def certs_dir(self) -> Path:
        """``<host>.crt`` + ``<host>.key`` (PEM), or ``*.<parent>`` files for wildcards."""
        return self.directory / "certs"

    @property
    def default_cert(self) -> tuple[Path, Path]:
        """The self-signed certificate served when no file matches the SNI name."""
        return self.directory / "default.crt", self.directory / "default.key"

    @property
    def access_log_path(self) -> Path:
        return self.directory / "logs" / "access.log"

    @property
    def error_log_path(self) -> Path:
        return self.directory / "logs" / "error.log"


def _lua(value: object) -> str:
    """A Lua literal for a string, number, boolean or None."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return '"' + "".join(c if c.isalnum() or c in " ._-:/@*+=,%~" else f"\\{ord(c):03d}"
                         for c in text) + '"'


def render_lua(config: EdgeConfig) -> str:
    """conf.lua: the table the Lua module gets at start (Redis, prefix, timeouts)."""
    url = urlsplit(config.redis_url)
    if url.scheme not in ("redis", ""):
        raise InvalidInput(f"the edge speaks plain redis:// only, not {url.scheme}://")
    db = (url.path or "/0").strip("/") or "0"
    https_port = config.https_listen[1] if config.https_listen else None
    values = {
        "redis_host": url.hostname or "127.0.0.1",
        "redis_port": url.port or 6379,
        "redis_db": int(db),
        "redis_user": unquote(url.username or ""),
        "redis_password": unquote(url.password or ""),
        "redis_timeout": 500,
        "prefix": config.prefix,
        "cache_ttl": config.cache_ttl,
        "miss_ttl": config.miss_ttl,
        "dead_ttl": config.dead_ttl,
        "retries": config.retries,
        "connect_timeout": config.connect_timeout,
        "send_timeout": config.backend_timeout,
        "read_timeout": config.backend_timeout,
        "https_redirect": config.https_redirect,
        "https_port": https_port,
        "max_body": config.client_max_body_size,
        # nginx's client_max_body_size ("0": none): a smaller app limit has the Lua check
        # bodies of unknown length (chunked, HTTP/2 without content-length)
        "body_ceiling": config.max_body_size or 2**53,
        "certs_dir": str(config.certs_dir),
    }
    if values["redis_user"] and not values["redis_password"]:
        values["redis_password"], values["redis_user"] = values["redis_user"], ""
    body = ",\n".join(f"  {k} = {_lua(v)}" for k, v in values.items())
    return f"return {{\n{body}\n}}\n"


def _ms(seconds: float) -> str:
    """An nginx time in milliseconds (at least 1 ms)."""
    return f"{max(int(seconds * 1000), 1)}ms"


def _addr(listen: tuple[str, int]) -> str:
    host, port = listen
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _geo_exempt(exempt: str) -> str:
    lines = []
    for item in exempt.split():
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise InvalidInput(f"invalid edge_limit_exempt entry {item!r}") from exc
        lines.append(f"        {net} 1;")
    return "\n".join(lines)


def _check_limits(config: EdgeConfig) -> None:
    for name in ("limit_conn", "limit_rate", "limit_burst"):
        if getattr(config, name) < 0:
            raise InvalidInput(f"edge_{name} must be 0 (no limit) or more")


def _limit_zones(config: EdgeConfig) -> str:
    """The per-IP limit zones (http level). nginx refuses a limit of 0: 0 means none."""
    _check_limits(config)
    lines = []
    if config.limit_conn:
        lines += ["    limit_conn_zone $gp_limit_key zone=gp_conn:10m;",
                  "    limit_conn_status 429;"]
    if config.limit_rate:
        lines += [f"    limit_req_zone $gp_limit_key zone=gp_req:20m rate={config.limit_rate}r/s;",
                  "    limit_req_status 429;"]
    return "".join(line + "\n" for line in lines)


def _limit_rules(config: EdgeConfig) -> str:
    """The per-IP limits of the app server (a burst of 0 is nginx's default: no burst=)."""
    lines = []
    if config.limit_conn:
        lines.append(f"        limit_conn gp_conn {config.limit_conn};")
    if config.limit_rate:
        burst = f" burst={config.limit_burst}" if config.limit_burst else ""
        lines.append(f"        limit_req zone=gp_req{burst} nodelay;")
    return "".join(line + "\n" for line in lines)


def render_nginx(config: EdgeConfig) -> str:
    """nginx.conf of the edge."""
    d = config.directory
    header_buf = max(1024, config.max_header_bytes // 4)
    access = (f"access_log {config.access_log_path} gitpaas buffer=64k flush=1s;"
              if config.access_log else "access_log off;")
    tls = ""
    if config.https_listen:
        crt, key = config.default_cert
        tls = (f"        listen {_addr(config.https_listen)} ssl http2;\n"
               f"        ssl_certificate {crt};\n        ssl_certificate_key {key};\n"
               "        ssl_certificate_by_lua_block { edge.certificate() }\n"
               "        ssl_protocols TLSv1.2 TLSv1.3;\n"
               "        ssl_session_cache shared:gp_tls:10m;\n")
    admin = ""
    if config.admin_listen:
        admin = f"""
    server {{
        listen {_addr(config.admin_listen)};
        access_log off;
        location = /metrics {{ content_by_lua_block {{ edge.metrics() }} }}
        location / {{ return 404; }}
    }}
"""
    modules = "\n".join(f"load_module {m};" for m in MODULES)
    user = config.user or pwd.getpwuid(os.geteuid()).pw_name
    if not re.fullmatch(r"[a-z_][a-z0-9_-]*", user):
        raise InvalidInput(f"invalid edge_user {user!r}")
    user_line = f"user {user};" if os.geteuid() == 0 else "# workers run as the invoking user"
    # The data plane before the control plane: under an SSH key-exchange flood (Python in
    # gitpaas serve) the workers keep their CPU share. Only root may raise a priority.
    priority = f"worker_priority {config.worker_priority};" if os.geteuid() == 0 else ""
    return f"""# Rendered by gitpaas (gitpaas/edge/config.py): edits are overwritten.
{modules}
{user_line}
{priority}
worker_processes {config.workers};
pid {config.pid_path};
error_log {config.error_log_path} warn;

events {{
    worker_connections 16384;
}}

http {{
    lua_package_path "{config.lua_dir}/?.lua;{LUA_RESTY}/?.lua;;";
    # cosocket errors are returned to the Lua, which logs what matters (the pub/sub
    # connection's idle read timeouts, each second, are no error)
    lua_socket_log_errors off;
    lua_shared_dict gp_routes 64m;
    lua_shared_dict gp_state 8m;
    lua_shared_dict gp_metrics 4m;
    init_by_lua_block {{
        edge = require "gitpaas_edge"
        edge.init(dofile("{config.lua_conf_path}"))
    }}
    init_worker_by_lua_block {{ edge.init_worker() }}

    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;

    log_format gitpaas '$time_iso8601 $host $request_method "$request_uri" $status '
                       '$body_bytes_sent $upstream_addr $request_time';
    {access}
    server_tokens off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nodelay on;
    client_header_timeout {_ms(config.header_timeout)};
    client_body_timeout {_ms(config.backend_timeout)};
    send_timeout {_ms(config.backend_timeout)};
    keepalive_timeout {_ms(config.idle_timeout)};
    keepalive_requests 10000;
    large_client_header_buffers 4 {header_buf};
    client_max_body_size {config.max_body_size};
    ignore_invalid_headers on;
    underscores_in_headers off;

    # geo values are plain strings (a "$binary_remote_addr" there is that text, one key
    # shared by every client): geo tells exempt addresses, a map makes the per-IP key
    geo $gp_limit_exempt {{
        default 0;
{_geo_exempt(config.limit_exempt)}
    }}
    map $gp_limit_exempt $gp_limit_key {{
        0 $binary_remote_addr;
        1 "";
    }}
{_limit_zones(config)}
    map $http_upgrade $gp_connection {{
        default upgrade;
        "" "";
    }}

    upstream gp_backend {{
        server 0.0.0.1;  # placeholder: edge.balance() picks the backend
        balancer_by_lua_block {{ edge.balance() }}
        keepalive 256;
        keepalive_timeout 30s;
        keepalive_requests 10000;
    }}

    server {{
        listen {_addr(config.listen)};
{tls}        server_name _;
{_limit_rules(config)}        error_page 404 413 429 500 502 503 504 @gp_error;
        log_by_lua_block {{ edge.log() }}

        location @gp_error {{
            content_by_lua_block {{ edge.error_page() }}
        }}
        location /.well-known/acme-challenge/ {{
            content_by_lua_block {{ edge.acme() }}
        }}
        location / {{
            access_by_lua_block {{ edge.route() }}
            proxy_pass http://gp_backend;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Connection $gp_connection;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Host $http_host;
            # hop-by-hop: an empty value drops the header (the Lua drops Connection-listed ones)
            proxy_set_header Keep-Alive "";
            proxy_set_header Proxy-Connection "";
            proxy_set_header TE "";
            proxy_set_header Trailer "";
            proxy_connect_timeout {_ms(config.connect_timeout)};
            proxy_send_timeout {_ms(config.backend_timeout)};
            proxy_read_timeout {_ms(config.backend_timeout)};
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries {config.retries + 1};
            proxy_buffering off;
            proxy_request_buffering on;
            proxy_redirect off;
            proxy_intercept_errors off;
            # an app's answer never steers the edge: no internal redirects to the edge's own
            # locations, no rate or buffering changes (nginx already hides these headers)
            proxy_ignore_headers X-Accel-Redirect X-Accel-Limit-Rate X-Accel-Buffering
                                 X-Accel-Charset X-Accel-Expires;
        }}
    }}
{admin}}}
"""
