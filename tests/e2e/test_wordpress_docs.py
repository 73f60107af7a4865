"""docs/wordpress.md, run as written: its shell blocks marked ``<!-- doc-test -->`` run
verbatim in bash, in order, against a real ``gitpaas serve``; the result must be a working
blog. The only help the blocks get is on ``PATH``: ``ssh`` and ``curl`` wrappers that send
the default install's ports (2222, 8080) to this test's server and use its admin key.
Also: every address in the page is the one a default install answers at."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest

from gitpaas.settings import Settings
from tests.harness import Server

pytestmark = pytest.mark.timeout(900)
DOC = Path(__file__).resolve().parents[2] / "docs" / "wordpress.md"
MARKED_BLOCK = re.compile(r"<!-- doc-test -->\n```sh\n(.*?)\n```\n", re.S)
ADMIN_PASSWORD = "correct-horse-battery-staple-42"
DEFAULTS = Settings()
DEFAULT_SSH_PORT = DEFAULTS.listen("ssh")[1]
DEFAULT_HTTP_PORT = DEFAULTS.listen("http")[1]

WRAPPER = '''\
#!{python}
"""{name} as docs/wordpress.md runs it, pointed at the test's server."""
import os
import sys

SSH_PORT, HTTP_PORT = {ssh_port!r}, {http_port!r}
args = sys.argv[1:]
if os.path.basename(sys.argv[0]) == "ssh":
    args = [SSH_PORT if a == "{default_ssh}" and i and args[i - 1] == "-p" else a
            for i, a in enumerate(args)]
    os.execv({ssh!r}, ["ssh", "-F", "/dev/null", "-i", {key!r},
                              "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                              "-o", "StrictHostKeyChecking=no",
                              "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                              *args])
os.execv({curl!r}, ["curl", "--connect-to", "::127.0.0.1:" + HTTP_PORT, *args])
'''

THEME_CSS = "/*\nTheme Name: My theme\nDescription: docs/wordpress.md's example theme\n*/\n"
THEME_INDEX = ("<!doctype html><html><head><title><?php bloginfo('name'); ?></title>"
               "<?php wp_head(); ?></head><body><p>my-theme is on</p></body></html>\n")
PLUGIN = ("<?php\n/*\nPlugin Name: My plugin\n*/\n"
          "add_action('send_headers', function () { header('X-My-Plugin: on'); });\n")


def marked_blocks(text: str) -> list[str]:
    """The shell blocks of ``text`` marked for this test, in order."""
    return MARKED_BLOCK.findall(text)


def test_marked_blocks_are_found():
    blocks = marked_blocks(DOC.read_text())
    assert len(blocks) >= 5
    assert blocks[0].startswith("mkdir blog") and "git push paas main" in blocks[2]


def test_every_address_in_the_page_is_a_default_installs():
    """http://<app>.<default domain>:<default port>/, ssh -p <default port> git@localhost;
    example.com only where the page maps them to a real domain."""
    text = DOC.read_text()
    for url in re.findall(r"https?://[^\s`')]+", text):
        host = urllib.parse.urlsplit(url).netloc
        if host.endswith("example.com"):
            continue
        assert re.fullmatch(rf"[a-z0-9-]+\.{re.escape(DEFAULTS.domain)}:{DEFAULT_HTTP_PORT}",
                            host), url
    for command in re.findall(r"ssh [^`\n]*", text):
        assert re.match(rf"ssh -p {DEFAULT_SSH_PORT} git@localhost( |$)", command), command
    for remote in re.findall(r"ssh://\S+", text):
        assert remote == f"ssh://git@localhost:{DEFAULT_SSH_PORT}/blog.git", remote
    assert "HOST" not in text.replace("DB_HOST", "").replace("WP_HOME", "")


def write_wrappers(bin_dir: Path, srv: Server) -> None:
    bin_dir.mkdir()
    for name in ("ssh", "curl"):
        path = bin_dir / name
        path.write_text(WRAPPER.format(
            python=sys.executable, name=name, ssh_port=str(srv.ssh_port),
            http_port=str(srv.http_port), key=str(srv.admin_key),
            default_ssh=DEFAULT_SSH_PORT, ssh=shutil.which("ssh"), curl=shutil.which("curl")))
        path.chmod(0o755)


def write_home(home: Path) -> None:
    """What the page assumes you have: ~/my-theme and ~/my-plugin."""
    (home / "my-theme").mkdir(parents=True)
    (home / "my-theme" / "style.css").write_text(THEME_CSS)
    (home / "my-theme" / "index.php").write_text(THEME_INDEX)
    (home / "my-plugin").mkdir()
    (home / "my-plugin" / "my-plugin.php").write_text(PLUGIN)


def get(srv: Server, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=60)
    try:
        conn.request(method, path, body=body,
                     headers={"Host": f"blog.{DEFAULTS.domain}:{DEFAULT_HTTP_PORT}",
                              **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_the_pages_steps_verbatim_give_a_working_blog(wp_server, wordpress_image, tmp_path,
                                                      docker_client):
    srv = wp_server
    script = "\n".join(marked_blocks(DOC.read_text()))
    home, work = tmp_path / "home", tmp_path / "work"
    write_home(home)
    work.mkdir()
    write_wrappers(tmp_path / "bin", srv)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PAAS_"))}
    env.update(HOME=str(home), PATH=f"{tmp_path / 'bin'}:{env['PATH']}",
               GIT_AUTHOR_NAME="Newcomer", GIT_AUTHOR_EMAIL="new@example.com",
               GIT_COMMITTER_NAME="Newcomer", GIT_COMMITTER_EMAIL="new@example.com")
    run = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, textwrap.shorten(output, 6000)

    # The first push deployed, and says where the blog is: the page's address, with this
    # server's port where a default install has 8080.
    live = f"blog v1 is live at http://blog.{DEFAULTS.domain}:{srv.http_port}/"
    assert live in output, output
    documented = f"blog v1 is live at http://blog.{DEFAULTS.domain}:{DEFAULT_HTTP_PORT}/"
    assert documented in DOC.read_text()
    location = f"http://blog.{DEFAULTS.domain}:{DEFAULT_HTTP_PORT}/wp-admin/install.php"
    assert f"Location: {location}" in DOC.read_text()
    assert re.search(rf"(?im)^location: {re.escape(location)}\s*$", run.stdout), run.stdout

    # The installer, then the theme the page pushed and chose.
    form = urllib.parse.urlencode({
        "weblog_title": "My blog", "user_name": "admin", "admin_password": ADMIN_PASSWORD,
        "admin_password2": ADMIN_PASSWORD, "pw_weak": "1", "admin_email": "me@example.com",
        "blog_public": "0", "language": "", "Submit": "Install WordPress"}).encode()
    status, _, body = get(srv, "/wp-admin/install.php?step=2", "POST", form,
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"Success!" in body, body[-2000:]
    status, headers, page = get(srv, "/")
    assert status == 200 and b"my-theme is on" in page, page[:2000]
    if built_on_this_checkouts_image(docker_client, srv, wordpress_image):
        # WP_PLUGINS is this checkout's image's; another checkout sharing the engine may
        # have moved gitpaas-base/wordpress:latest to its own build meanwhile.
        assert headers.get("x-my-plugin") == "on", headers
    ok = srv.ssh("apps:destroy", "blog", "--confirm", "blog")
    assert ok.returncode == 0, ok.stderr


def built_on_this_checkouts_image(docker_client, srv: Server, image: str) -> bool:
    """Whether the blog's running container was built on ``image`` (its recipe label)."""
    from gitpaas.images import HASH_LABEL

    wanted = docker_client.images.get(image).labels.get(HASH_LABEL)
    label = f"gitpaas.instance={srv.instance}"
    containers = docker_client.containers.list(filters={"label": label})
    labels = [c.image.labels.get(HASH_LABEL) for c in containers if "blog" in c.name]
    return bool(labels) and all(found == wanted for found in labels)
