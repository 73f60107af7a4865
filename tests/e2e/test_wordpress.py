"""A WordPress site in one push: MySQL datastore, persistent uploads, the installer, a
post and a media upload over XML-RPC, a redeploy, isolation from a second site, and
mysql:export / mysql:import into a fresh app. Real MariaDB, Docker, git, OpenSSH."""

from __future__ import annotations

import http.client
import struct
import urllib.parse
import xmlrpc.client
import zlib
from pathlib import Path

import pymysql
import pytest

from gitpaas.datastores.mysql import MySQLDatastores
from gitpaas.datastores.mysql import Server as MySQLServer
from tests.conftest import require, unique
from tests.harness import HAS_ROUTER, Server, commit_files, make_repo

pytestmark = pytest.mark.timeout(900)
ADMIN_PASSWORD = "correct-horse-battery-staple-42"
UPLOADS = "/var/lib/wordpress/wp-content/uploads"
THEME = "gitpaas-e2e"


# -- HTTP through the router ------------------------------------------------------------

def request(server: Server, method: str, host: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request through the router with ``Host: host``; redirects are not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def install(server: Server, host: str) -> None:
    form = urllib.parse.urlencode({
        "weblog_title": "gitpaas blog", "user_name": "admin", "admin_password": ADMIN_PASSWORD,
        "admin_password2": ADMIN_PASSWORD, "pw_weak": "1", "admin_email": "admin@example.com",
        "blog_public": "0", "language": "", "Submit": "Install WordPress"}).encode()
    status, _, body = request(server, "POST", host, "/wp-admin/install.php?step=2", form,
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"Success!" in body, body[-2000:]


def xmlrpc_call(server: Server, host: str, method: str, *params):
    payload = xmlrpc.client.dumps(params, method, allow_none=True).encode()
    status, _, body = request(server, "POST", host, "/xmlrpc.php", payload,
                              {"Content-Type": "text/xml"})
    assert status == 200, body[:2000]
    return xmlrpc.client.loads(body)[0][0]


def png_pixel() -> bytes:
    """A valid 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x80\x00")) + chunk(b"IEND", b""))


def site_files(image: str, version: str) -> dict[str, str]:
    """A repo: the WordPress base image plus a theme of its own."""
    return {
        "Dockerfile": f"FROM {image}\nCOPY wp-content/ /var/lib/wordpress/wp-content/\n",
        f"wp-content/themes/{THEME}/style.css":
            "/*\nTheme Name: gitpaas e2e\nDescription: the e2e test's theme\n*/\n",
        f"wp-content/themes/{THEME}/index.php": (
            "<!doctype html><html><head><title><?php bloginfo('name'); ?></title></head>"
            f"<body><p>rendered by the {THEME} theme {version}</p>\n"
            "<?php while (have_posts()) : the_post(); ?>"
            "<article><h2><?php the_title(); ?></h2><?php the_content(); ?></article>"
            "<?php endwhile; ?></body></html>\n"),
    }


def ok(result, *expected: str) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    for text in expected:
        assert text in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout


def config(server: Server, app: str, key: str) -> str:
    return ok(server.ssh("config:get", app, key)).strip()


def connect(user: str, password: str, database: str):
    return pymysql.connect(host="127.0.0.1", port=3306, user=user, password=password,
                           database=database, connect_timeout=5)


# -- the site ---------------------------------------------------------------------------

def test_wordpress_site_in_one_push(wp_server, wordpress_image, tmp_path, mysql_admin_url,
                                    docker_client):
    srv = wp_server
    host = srv.host("blog")
    db = f"{srv.instance}_blog"
    ok(srv.ssh("apps:create", "blog"))
    created = ok(srv.ssh("mysql:create", "blog"), f"Created MySQL database {db}",
                 "DATABASE_URL, DB_HOST, DB_NAME, DB_USER, DB_PASSWORD")
    password = config(srv, "blog", "DB_PASSWORD")
    assert len(password) == 32 and password not in created
    assert config(srv, "blog", "DATABASE_URL") == \
        f"mysql://{db}:{password}@172.17.0.1:3306/{db}"
    info = ok(srv.ssh("mysql:info", "blog"), f"mysql://{db}:****@172.17.0.1:3306/{db}")
    assert password not in info
    assert password in ok(srv.ssh("mysql:info", "blog", "--reveal"))
    ok(srv.ssh("storage:mount", "blog", f"uploads:{UPLOADS}"), "Mounting")
    ok(srv.ssh("config:set", "blog", f"WP_DEFAULT_THEME={THEME}"))

    repo = make_repo(tmp_path / "blog", site_files(wordpress_image, "v1"))
    pushed = srv.push(repo, "blog")
    assert pushed.returncode == 0, pushed.stderr
    assert password not in pushed.stderr + pushed.stdout

    install(srv, host)
    post_id = xmlrpc_call(srv, host, "wp.newPost", 1, "admin", ADMIN_PASSWORD, {
        "post_title": "Hello from gitpaas", "post_content": "Pushed, installed, posted.",
        "post_status": "publish"})
    media = xmlrpc_call(srv, host, "wp.uploadFile", 1, "admin", ADMIN_PASSWORD, {
        "name": "pixel.png", "type": "image/png", "bits": xmlrpc.client.Binary(png_pixel())})
    upload_path = urllib.parse.urlparse(media["url"]).path
    assert upload_path.startswith("/wp-content/uploads/") and upload_path.endswith(".png")
    volume = docker_client.volumes.get(f"{srv.instance}.blog.uploads")
    stored = Path(volume.attrs["Mountpoint"]) / upload_path[20:]
    assert stored.read_bytes() == png_pixel()

    def read_back(version: str) -> None:
        status, _, page = request(srv, "GET", host, f"/?p={post_id}")
        assert status == 200, page[:2000]
        assert b"Hello from gitpaas" in page and f"theme {version}".encode() in page
        status, _, data = request(srv, "GET", host, upload_path)
        assert status == 200 and data == png_pixel()

    read_back("v1")
    commit_files(repo, site_files(wordpress_image, "v2"), "theme v2")
    redeploy = srv.push(repo, "blog")
    assert redeploy.returncode == 0, redeploy.stderr
    read_back("v2")

    # A second site: its own credentials cannot reach the first site's database.
    ok(srv.ssh("apps:create", "blog2"))
    ok(srv.ssh("mysql:create", "blog2"))
    assert srv.push(repo, "blog2").returncode == 0
    status, headers, _ = request(srv, "GET", srv.host("blog2"), "/")
    assert status == 302 and "install.php" in headers["location"]
    user2, password2 = config(srv, "blog2", "DB_USER"), config(srv, "blog2", "DB_PASSWORD")
    with pytest.raises(pymysql.err.OperationalError) as denied:
        connect(user2, password2, db)
    assert denied.value.args[0] == 1044
    connect(user2, password2, f"{srv.instance}_blog2").close()

    # Export the first site, import into a fresh app: the post is there.
    dump = ok(srv.ssh("mysql:export", "blog"))
    assert "Hello from gitpaas" in dump and password not in dump
    ok(srv.ssh("apps:create", "copy"))
    ok(srv.ssh("mysql:create", "copy"))
    ok(srv.ssh("mysql:import", "copy", input=dump), "done")
    user3, password3 = config(srv, "copy", "DB_USER"), config(srv, "copy", "DB_PASSWORD")
    with connect(user3, password3, f"{srv.instance}_copy") as conn, conn.cursor() as cur:
        cur.execute("SELECT post_title, post_status FROM wp_posts WHERE ID = %s", (post_id,))
        assert cur.fetchone() == ("Hello from gitpaas", "publish")
    copy_url = f"http://{srv.host('copy')}"
    ok(srv.ssh("config:set", "copy", f"WP_HOME={copy_url}", f"WP_SITEURL={copy_url}"))
    assert srv.push(repo, "copy").returncode == 0
    status, _, page = request(srv, "GET", srv.host("copy"), f"/?p={post_id}")
    assert status == 200 and b"Hello from gitpaas" in page and b"theme v2" in page

    assert password not in srv.log() and password2 not in srv.log()

    # apps:destroy drops the databases and users and removes the storage.
    for app in ("blog", "blog2", "copy"):
        ok(srv.ssh("apps:destroy", app, "--confirm", app))
    ds = MySQLDatastores(MySQLServer(mysql_admin_url), srv.instance)
    for app in ("blog", "blog2", "copy"):
        assert not ds.database_exists(f"{srv.instance}_{app}")
        assert not ds.user_exists(f"{srv.instance}_{app}")
    assert not (srv.data_dir / "storage" / "blog").exists()
    assert not docker_client.volumes.list(filters={"label": f"gitpaas.instance={srv.instance}"})


def test_mysql_commands_refuse_what_they_should(wp_server):
    srv = wp_server
    ok(srv.ssh("apps:create", "lone"))
    missing = srv.ssh("mysql:info", "lone")
    assert missing.returncode == 1 and "has no MySQL database" in missing.stderr
    ok(srv.ssh("mysql:create", "lone"), "no release yet")
    again = srv.ssh("mysql:create", "lone")
    assert again.returncode == 1 and "has a MySQL database already" in again.stderr
    unconfirmed = srv.ssh("mysql:destroy", "lone")
    assert unconfirmed.returncode == 1 and "--confirm lone" in unconfirmed.stderr
    empty = srv.ssh("mysql:import", "lone", input="")
    assert empty.returncode == 1 and "nothing to import" in empty.stderr
    bad = srv.ssh("storage:mount", "lone", "/etc:/data")
    assert bad.returncode == 1 and "outside the storage_roots" in bad.stderr
    ok(srv.ssh("mysql:destroy", "lone", "--confirm", "lone"), "Dropped MySQL database")
    assert "DB_PASSWORD" not in ok(srv.ssh("config", "lone"))
    ok(srv.ssh("apps:destroy", "lone", "--confirm", "lone"))


def test_storage_survives_releases(wp_server, busybox_image, tmp_path):
    """A file written into a mounted directory by one release is read by the next."""
    srv = wp_server
    files = {"Dockerfile": f"FROM {busybox_image}\n"
                           'CMD ["/bin/httpd", "-f", "-p", "5000", "-h", "/www"]\n',
             "Procfile": "web: date +%N >> /www/data/boots; httpd -f -p $PORT -h /www\n"}
    ok(srv.ssh("apps:create", "keep"))
    ok(srv.ssh("storage:mount", "keep", "data:/www/data"))
    assert "data:/www/data" in ok(srv.ssh("storage", "keep"))
    repo = make_repo(tmp_path / "keep", files)
    assert srv.push(repo, "keep").returncode == 0
    ok(srv.ssh("ps:restart", "keep"))
    status, body = srv.get(srv.host("keep"), "/data/boots")
    assert status == 200 and len(body.split()) == 2
    ok(srv.ssh("storage:unmount", "keep", "data:/www/data"), "the files are kept")
    assert ok(srv.ssh("storage", "keep")).strip() == "=== keep Storage"
    ok(srv.ssh("apps:destroy", "keep", "--confirm", "keep"))
    assert not (srv.data_dir / "storage" / "keep").exists()


def test_state_on_mysql_serves_a_push_and_config_set(tmp_path_factory, redis_url,
                                                     docker_client, mysql_database,
                                                     busybox_image, clients):
    """gitpaas serve with GITPAAS_DATABASE_URL=mysql://... in a fresh MariaDB database."""
    import redis

    from tests.e2e.test_push import httpd_app

    require(HAS_ROUTER, "the router")
    srv = Server(root=tmp_path_factory.mktemp("state"), instance=unique("m"),
                 redis_url=redis_url, extra_env={"GITPAAS_DATABASE_URL": mysql_database})
    try:
        srv.admin_key = srv.add_key("admin")
        srv.start()
        repo = make_repo(Path(srv.root) / "site", {
            **httpd_app(busybox_image, "on mysql\n"),
            "Procfile": "web: echo $GREETING > /www/g.txt; httpd -f -p $PORT -h /www\n"})
        pushed = srv.push(repo, "onmysql")
        assert pushed.returncode == 0, pushed.stderr
        assert srv.get(srv.host("onmysql")) == (200, "on mysql\n")
        ok(srv.ssh("config:set", "onmysql", "GREETING=hello"), "done, v2")
        assert srv.get(srv.host("onmysql"), "/g.txt") == (200, "hello\n")
        releases = ok(srv.ssh("releases", "onmysql"))
        assert "Set GREETING" in releases and "Deploy " in releases
        assert not (srv.data_dir / "state.db").exists()
        with pymysql.connect(**_url_args(mysql_database)) as conn, conn.cursor() as cur:
            cur.execute("SELECT name, current_version FROM gp_apps")
            assert cur.fetchall() == (("onmysql", 2),)
    finally:
        srv.cleanup(docker_client)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{srv.instance}:*", count=1000):
            client.delete(key)
        client.close()


def _url_args(url: str) -> dict:
    p = urllib.parse.urlparse(url)
    return {"host": p.hostname, "port": p.port or 3306, "user": p.username,
            "password": urllib.parse.unquote(p.password or ""), "database": p.path[1:]}


def test_mysql_create_is_undone_when_the_roll_out_fails(wp_server, busybox_image, tmp_path,
                                                        mysql_admin_url):
    from tests.e2e.test_push import httpd_app

    srv = wp_server
    files = {**httpd_app(busybox_image, "ok\n"),
             "Procfile": 'web: test -z "$DATABASE_URL" && httpd -f -p $PORT -h /www\n'}
    assert srv.push(make_repo(tmp_path / "picky", files), "picky").returncode == 0
    failed = srv.ssh("mysql:create", "picky")
    assert failed.returncode == 1 and "failed" in failed.stdout, failed.stderr
    ds = MySQLDatastores(MySQLServer(mysql_admin_url), srv.instance)
    assert not ds.database_exists(f"{srv.instance}_picky")
    assert not ds.user_exists(f"{srv.instance}_picky")
    assert "DATABASE_URL" not in ok(srv.ssh("config", "picky"))
    assert srv.get(srv.host("picky")) == (200, "ok\n")
    ok(srv.ssh("mysql:create", "picky", "--no-restart"), "--no-restart")
    ok(srv.ssh("apps:destroy", "picky", "--confirm", "picky"))
    assert not ds.database_exists(f"{srv.instance}_picky")


def test_who_may_use_databases_and_storage(wp_server):
    srv = wp_server
    keys = {role: srv.add_key(f"wp{role}") for role in ("owner", "collab", "stranger")}
    ok(srv.ssh("apps:create", "acldb", key=keys["owner"]))
    ok(srv.ssh("sharing:add", "acldb", "wpcollab", key=keys["owner"]))
    ok(srv.ssh("mysql:create", "acldb", key=keys["collab"]))
    not_found = " !     no app named 'acldb', or you may not use it\n"
    for argv in (["mysql:info", "acldb"], ["mysql:export", "acldb"],
                 ["mysql:import", "acldb"], ["mysql:create", "acldb"],
                 ["mysql:destroy", "acldb", "--confirm", "acldb"], ["storage", "acldb"],
                 ["storage:mount", "acldb", "x:/x"], ["config:get", "acldb", "DB_PASSWORD"]):
        result = srv.ssh(*argv, key=keys["stranger"], input="SELECT 1;\n")
        assert (result.returncode, result.stderr) == (1, not_found), argv
    ok(srv.ssh("mysql:info", "acldb", key=keys["collab"]))
    ok(srv.ssh("storage:mount", "acldb", "x:/x", key=keys["collab"]))
    ok(srv.ssh("mysql:import", "acldb", key=keys["collab"], input="CREATE TABLE t (i INT);\n"))
    assert "CREATE TABLE `t`" in ok(srv.ssh("mysql:export", "acldb", key=keys["collab"]))
    denied = srv.ssh("mysql:destroy", "acldb", "--confirm", "acldb", key=keys["collab"])
    assert denied.returncode == 1 and "only the owner of acldb or an admin" in denied.stderr
    outside = srv.ssh("storage:mount", "acldb", f"{srv.root}:/y", key=keys["collab"])
    assert outside.returncode == 1 and "only an admin may bind" in outside.stderr
    ok(srv.ssh("mysql:destroy", "acldb", "--confirm", "acldb", key=keys["owner"]))
    ok(srv.ssh("apps:destroy", "acldb", "--confirm", "acldb", key=keys["owner"]))


def test_export_loads_on_mysql_8_and_config_masks_the_password(wp_server):
    """The dump has no MariaDB-only sandbox line (MySQL 8's client stops at it) and loads
    back with mysql:import; ``config`` masks what mysql:create set unless --reveal."""
    import json

    from gitpaas.datastores.mysql import SANDBOX_LINE

    srv = wp_server
    ok(srv.ssh("apps:create", "dumped"))
    ok(srv.ssh("mysql:create", "dumped"))
    ok(srv.ssh("mysql:import", "dumped", input=(
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT);\n"
        "INSERT INTO notes VALUES (1, 'a \\\\- backslash and a\\nnewline');\n")))
    dump = ok(srv.ssh("mysql:export", "dumped"))
    assert not dump.startswith("/*M!") and SANDBOX_LINE not in dump, dump[:200]
    assert dump.lstrip().startswith("/*!40101 SET"), dump[:200]
    ok(srv.ssh("apps:create", "loaded"))
    ok(srv.ssh("mysql:create", "loaded"))
    ok(srv.ssh("mysql:import", "loaded", input=dump), "done")
    user, password = config(srv, "loaded", "DB_USER"), config(srv, "loaded", "DB_PASSWORD")
    with connect(user, password, f"{srv.instance}_loaded") as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM notes WHERE id = 1")
        assert cur.fetchone() == ("a \\- backslash and a\nnewline",)

    db = f"{srv.instance}_loaded"
    shown = ok(srv.ssh("config", "loaded"))
    assert password not in shown
    assert f"DATABASE_URL: mysql://{db}:****@172.17.0.1:3306/{db}" in shown
    assert "DB_PASSWORD:  ****" in shown and f"DB_USER:      {db}" in shown
    info = ok(srv.ssh("mysql:info", "loaded"))
    assert f"mysql://{db}:****@172.17.0.1:3306/{db}" in info
    as_json = json.loads(ok(srv.ssh("config", "loaded", "--json")))
    assert as_json["DB_PASSWORD"] == "****" and password not in json.dumps(as_json)
    assert password not in ok(srv.ssh("config", "loaded", "--encoded"))
    revealed = ok(srv.ssh("config", "loaded", "--reveal"))
    assert f"DB_PASSWORD:  {password}" in revealed
    assert f"mysql://{db}:{password}@" in revealed
    # A password the user set themselves, with no datastore, is theirs to see.
    ok(srv.ssh("mysql:destroy", "loaded", "--confirm", "loaded"))
    ok(srv.ssh("config:set", "loaded", "DB_PASSWORD=mine", "--no-restart"))
    assert "DB_PASSWORD: mine" in ok(srv.ssh("config", "loaded"))
    for app in ("dumped", "loaded"):
        ok(srv.ssh("apps:destroy", app, "--confirm", app))


# -- what a newcomer meets --------------------------------------------------------------

IP_PHP = "<?php header('Content-Type: text/plain'); echo $_SERVER['REMOTE_ADDR'], \"\\n\";\n"
PLUGIN_PHP = ("<?php\n/*\nPlugin Name: Pushed plugin\n*/\n"
              "add_action('send_headers', function () {\n"
              "    header('X-Pushed-Plugin: on for ' . $_SERVER['REMOTE_ADDR']);\n});\n")
VISITOR = "127.0.0.2"  # another loopback address: not the edge, not the gateway


def visit(server: Server, host: str, path: str, headers: dict[str, str] | None = None,
          method: str = "GET", body: bytes | None = None):
    """A request through the edge from ``VISITOR``; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60,
                                      source_address=(VISITOR, 0))
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def log_in(server: Server, host: str) -> str:
    """Log in as admin; return the Cookie header of the session."""
    form = urllib.parse.urlencode({"log": "admin", "pwd": ADMIN_PASSWORD,
                                   "testcookie": "1", "redirect_to": "/wp-admin/"}).encode()
    test_cookie = "wordpress_test_cookie=WP%20Cookie%20check"
    status, headers, body = request(server, "POST", host, "/wp-login.php", form, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": test_cookie})
    assert status == 302, body[-2000:]
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        conn.request("POST", "/wp-login.php", body=form, headers={
            "Host": host, "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": test_cookie})
        resp = conn.getresponse()
        resp.read()
        cookies = [v.split(";", 1)[0] for k, v in resp.getheaders()
                   if k.lower() == "set-cookie"]
    finally:
        conn.close()
    assert any(c.startswith("wordpress_logged_in_") for c in cookies), cookies
    return "; ".join(cookies)


def test_visitor_address_no_wp_admin_installs_and_pushed_plugins_on(wp_server,
                                                                   wordpress_image, tmp_path):
    """Apache's log and PHP see the visitor's address (a forged X-Forwarded-For does not
    count); wp-admin offers no installs or updates; a plugin named in WP_PLUGINS is active
    without a click; Apache's OPTIONS * pings are not logged."""
    srv = wp_server
    host = srv.host("newcomer")
    ok(srv.ssh("apps:create", "newcomer"))
    ok(srv.ssh("mysql:create", "newcomer"))
    ok(srv.ssh("config:set", "newcomer", f"WP_DEFAULT_THEME={THEME}",
               "WP_PLUGINS=pushed-plugin"))
    files = {**site_files(wordpress_image, "v1"), "wp-content/ip.php": IP_PHP,
             "wp-content/plugins/pushed-plugin/pushed-plugin.php": PLUGIN_PHP}
    pushed = srv.push(make_repo(tmp_path / "newcomer", files), "newcomer")
    assert pushed.returncode == 0, pushed.stderr
    install(srv, host)

    status, _, body = visit(srv, host, "/wp-content/ip.php?who",
                            {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"})
    assert (status, body) == (200, f"{VISITOR}\n".encode())
    status, headers, _ = visit(srv, host, "/?from-the-visitor")
    assert status == 200 and headers.get("x-pushed-plugin") == f"on for {VISITOR}", headers

    cookie = log_in(srv, host)
    status, _, body = request(srv, "GET", host, "/wp-admin/plugin-install.php",
                              headers={"Cookie": cookie})
    assert status == 403 and b"not allowed" in body, body[-1000:]
    status, _, body = request(srv, "GET", host, "/wp-admin/plugins.php",
                              headers={"Cookie": cookie})
    assert status == 200 and b"Always active (WP_PLUGINS)" in body
    assert b"plugin-install.php" not in body and b"action=delete-selected" not in body
    status, _, body = request(srv, "GET", host, "/wp-admin/update-core.php",
                              headers={"Cookie": cookie})
    assert status == 403, body[-1000:]

    def logged() -> list[str]:
        return ok(srv.ssh("logs", "newcomer", "-n", "1000")).splitlines()

    lines = logged()
    who = [line for line in lines if "GET /wp-content/ip.php?who " in line]
    assert len(who) == 1 and f"| {VISITOR} - - [" in who[0], who
    assert any("GET /?from-the-visitor " in line and f"| {VISITOR} " in line
               for line in lines), lines[-20:]
    assert not any("OPTIONS *" in line for line in lines)
    ok(srv.ssh("apps:destroy", "newcomer", "--confirm", "newcomer"))
