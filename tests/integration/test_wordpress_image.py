"""The WordPress base image's start script: configuration from the environment."""

from __future__ import annotations

import shutil

import pytest

from gitpaas import images
from gitpaas.settings import Settings
from tests.conftest import require

pytestmark = pytest.mark.docker
PRINT_CONFIG = ('require "/etc/wordpress/config-default.php";'
                ' echo json_encode([DB_HOST, DB_NAME, DB_USER, DB_PASSWORD, $table_prefix,'
                ' WP_DEFAULT_THEME, strlen(AUTH_KEY), AUTH_KEY === NONCE_KEY]) . "\n";')


@pytest.fixture(scope="module")
def wordpress_image(docker_client):
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap (Debian package mmdebstrap)")
    images.build_images(Settings(), ["wordpress"], progress=lambda _: None,
                        client=docker_client)
    return images.recipe_image_name(images.load_recipe("wordpress"))


def run(docker_client, image: str, env: dict[str, str], script: str) -> tuple[int, str]:
    container = docker_client.containers.run(image, ["sh", "-c", script], environment=env,
                                             detach=True)
    try:
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def test_config_holds_values_exactly_even_with_quotes(docker_client, wordpress_image):
    import json

    env = {"DB_HOST": "172.17.0.1:3307", "DB_NAME": "gitpaas_blog", "DB_USER": "u'ser",
           "DB_PASSWORD": "p'a\\ss\"$x`y", "WP_TABLE_PREFIX": "blog_",
           "WP_DEFAULT_THEME": "mine"}
    code, out = run(docker_client, wordpress_image, env,
                    f"gitpaas-wordpress -v >/dev/null && php -r '{PRINT_CONFIG}'"
                    " && stat -c '%a %U %G' /etc/wordpress/config-default.php"
                    " /var/lib/wordpress/wp-content/uploads")
    assert code == 0, out
    values, modes = out.split("\n", 1)
    assert json.loads(values) == ["172.17.0.1:3307", "gitpaas_blog", "u'ser",
                                  "p'a\\ss\"$x`y", "blog_", "mine", 64, False]
    assert modes.split("\n")[:2] == ["640 root www-data", "755 www-data www-data"]


def test_refuses_to_start_without_a_database(docker_client, wordpress_image):
    code, out = run(docker_client, wordpress_image, {"DB_HOST": "h"}, "gitpaas-wordpress")
    assert code == 1 and "DB_NAME is not set (run: mysql:create APP)" in out


def test_wordpress_config_offers_no_installs_and_no_auto_updates(docker_client,
                                                                 wordpress_image):
    env = {"DB_HOST": "h", "DB_NAME": "n", "DB_USER": "u", "DB_PASSWORD": "p",
           "WP_PLUGINS": "my-plugin, akismet"}
    script = ('require "/etc/wordpress/config-default.php"; echo json_encode(['
              'DISALLOW_FILE_MODS, DISALLOW_FILE_EDIT, WP_AUTO_UPDATE_CORE,'
              ' AUTOMATIC_UPDATER_DISABLED, GITPAAS_PLUGINS]) . "\\n";')
    code, out = run(docker_client, wordpress_image, env,
                    f"gitpaas-wordpress -v >/dev/null && php -r '{script}'"
                    " && php -l /var/lib/wordpress/wp-content/mu-plugins/gitpaas.php")
    assert code == 0, out
    assert out.splitlines()[0] == '[true,true,false,true,"my-plugin, akismet"]'
    assert "No syntax errors" in out


# -- the visitor's address, from the edge only -------------------------------------------

IP_PHP = "<?php echo $_SERVER['REMOTE_ADDR'], \"\\n\";"


@pytest.fixture(scope="module")
def php_image(docker_client):
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap (Debian package mmdebstrap)")
    images.build_images(Settings(), ["php"], progress=lambda _: None, client=docker_client)
    return images.recipe_image_name(images.load_recipe("php"))


def serve_ip_page(docker_client, kind: str, image: str):
    """A container of ``image`` answering ``/ip.php`` with REMOTE_ADDR, on port 5000."""
    if kind == "php":
        env, start = {}, "mkdir -p /app && printf '%s' \"$IP\" > /app/ip.php && exec gitpaas-apache"
    else:
        env = {"DB_HOST": "h", "DB_NAME": "n", "DB_USER": "u", "DB_PASSWORD": "p"}
        start = ("printf '%s' \"$IP\" > /var/lib/wordpress/wp-content/ip.php"
                 " && exec gitpaas-wordpress")
    return docker_client.containers.run(image, ["sh", "-c", start], detach=True,
                                        environment={**env, "IP": IP_PHP})


def http_get(address: str, path: str, headers: dict[str, str]) -> str:
    import http.client
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection(address, 5000, timeout=10)
            conn.request("GET", path, headers=headers)
            return conn.getresponse().read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            conn.close()


@pytest.mark.parametrize("kind", ["php", "wordpress"])
def test_apache_trusts_x_forwarded_for_from_the_gateway_only(docker_client, busybox_image,
                                                             request, kind):
    """The host (the edge's side: the network's gateway) may name the visitor; another
    container may not. ``OPTIONS *`` pings are not logged."""
    import socket
    import time

    image = request.getfixturevalue("php_image" if kind == "php" else "wordpress_image")
    container = serve_ip_page(docker_client, kind, image)
    page = "/ip.php" if kind == "php" else "/wp-content/ip.php"
    client = None
    try:
        container.reload()
        address = container.attrs["NetworkSettings"]["IPAddress"]
        gateway = container.attrs["NetworkSettings"]["Gateway"]
        forwarded = {"X-Forwarded-For": "198.51.100.7"}
        assert http_get(address, f"{page}?from-the-edge", forwarded) == "198.51.100.7\n"
        client = docker_client.containers.run(busybox_image, [
            "sh", "-c", "hostname -i && wget -q -O - --header 'X-Forwarded-For: 198.51.100.8'"
            f" http://{address}:5000{page}"], detach=True)
        assert client.wait(timeout=60)["StatusCode"] == 0, client.logs()
        neighbour, seen = client.logs().decode().split()
        assert seen == neighbour != gateway
        with socket.create_connection((address, 5000), timeout=10) as ping:
            ping.sendall(b"OPTIONS * HTTP/1.0\r\n\r\n")
            assert ping.recv(100).startswith(b"HTTP/1.1 200")
        http_get(address, f"{page}?last", {})
        deadline = time.monotonic() + 10
        while "?last" not in (logs := container.logs().decode()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert '198.51.100.7 - - [' in logs and f"GET {page}?from-the-edge" in logs
        assert f'{neighbour} - - [' in logs and "198.51.100.8" not in logs
        assert f"{gateway} - - [" in logs and f"GET {page}?last" in logs
        assert "OPTIONS *" not in logs, logs
    finally:
        container.remove(force=True)
        if client is not None:
            client.remove(force=True)
