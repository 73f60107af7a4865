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
    return images.default_image_name("wordpress")


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
