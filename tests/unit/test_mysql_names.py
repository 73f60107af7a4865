"""Name derivation, credentials and storage path rules of the MySQL datastores."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitpaas.commands.storage import admin_host_dir, container_dir
from gitpaas.datastores.mysql import (
    MAX_DATABASE,
    MAX_USER,
    Credentials,
    _option_value,
    credentials_from_config,
    database_name,
    new_password,
    quote_identifier,
)
from gitpaas.deploy import legacy_storage_name
from gitpaas.errors import Forbidden, InvalidInput
from gitpaas.names import storage_name


def test_names_join_instance_and_app_with_dashes_as_underscores():
    assert database_name("gitpaas", "shop") == "gitpaas_shop"
    assert database_name("e1a2b3", "my-blog-2") == "e1a2b3_my_blog_2"


def test_longest_names_fit_mysql_limits():
    name = database_name("a" * 20, "b" + "-c" * 14 + "d")
    assert len(name) == 51 <= min(MAX_DATABASE, MAX_USER)


def test_names_are_one_to_one():
    # instances hold no '_' and apps no '_': the first '_' splits, '-' <-> '_' is reversible
    seen = {database_name(i, a) for i in ("ab", "a", "abc") for a in ("b-c", "bc", "c", "b")}
    assert len(seen) == 12


@pytest.mark.parametrize("instance, app", [
    ("Gitpaas", "shop"), ("git_paas", "shop"), ("gitpaas", "Shop"), ("gitpaas", "a_b"),
    ("gitpaas", "shop`; DROP"), ("gitpaas", "x" * 31), ("", "shop"), ("gitpaas", "a--b"),
])
def test_invalid_names_are_refused(instance, app):
    with pytest.raises(InvalidInput):
        database_name(instance, app)


def test_identifiers_are_checked_then_quoted():
    assert quote_identifier("gitpaas_shop") == "`gitpaas_shop`"
    for bad in ("a`b", "a b", "", "A", "x" * 65, "1abc"):
        with pytest.raises(InvalidInput):
            quote_identifier(bad)


def test_passwords_are_long_random_and_alphanumeric():
    passwords = {new_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) == 32 and p.isalnum() for p in passwords)


def test_credentials_config_vars_and_masking():
    creds = Credentials("172.17.0.1", 3306, "gitpaas_shop", "gitpaas_shop", "s3cret")
    assert creds.config_vars() == {
        "DATABASE_URL": "mysql://gitpaas_shop:s3cret@172.17.0.1:3306/gitpaas_shop",
        "DB_HOST": "172.17.0.1", "DB_NAME": "gitpaas_shop", "DB_USER": "gitpaas_shop",
        "DB_PASSWORD": "s3cret"}
    assert "s3cret" not in repr(creds) and "s3cret" not in creds.url(reveal=False)
    other = Credentials("db", 3307, "d", "u", "p@ss/word")
    assert other.db_host == "db:3307"
    assert credentials_from_config(other.config_vars()) == other
    assert credentials_from_config({"DB_HOST": "db:3307", "DB_NAME": "d", "DB_USER": "u",
                                    "DB_PASSWORD": "p@ss/word"}) == other
    assert credentials_from_config({"FOO": "bar"}) is None


def test_option_file_values_are_quoted():
    assert _option_value('a"b\\c') == '"a"b\\\\c"'
    with pytest.raises(InvalidInput):
        _option_value("a\nb")


def test_container_dirs():
    assert container_dir("/var/lib/wordpress/wp-content/uploads")
    for bad in ("/", "relative", "/a/../b", "/a/", "/proc", "/sys/x", "/dev", "/a b", "//a"):
        with pytest.raises(InvalidInput):
            container_dir(bad)


def test_admin_host_dirs_stay_in_allowed_roots(tmp_path: Path):
    shared = tmp_path / "shared"
    for bad in ("../other/uploads", str(tmp_path / "storage" / "blog2" / "x"), "/etc",
                "/var/lib/gitpaas/secret.key", str(shared), str(shared / ".." / "x")):
        with pytest.raises((Forbidden, InvalidInput)):
            admin_host_dir(bad, [shared])
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(Forbidden):
        admin_host_dir(str(tmp_path / "link" / "x"), [shared])
    assert admin_host_dir(str(shared / "x"), [shared]) == (shared / "x").resolve()


def test_storage_names_are_one_word_and_legacy_paths_map_to_them():
    for good in ("uploads", "a", "wp_content-2", "A" * 64):
        assert storage_name(good) == good
    for bad in ("", "a/b", "..", ".", "-x", "_x", "a.b", "A" * 65, "up loads", "/x", "x:y",
                "²", "ü"):
        with pytest.raises(InvalidInput):
            storage_name(bad)
    assert legacy_storage_name("uploads") == "uploads"
    assert legacy_storage_name("media/2024") == "media.2024"
    assert legacy_storage_name("a@b+c") == "a.b.c"
