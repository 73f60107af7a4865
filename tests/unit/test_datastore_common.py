"""What the datastores share (``gitpaas.datastores.common``): one credential model, one
URL parser, 0600 credential files and the streams to and from client programs (real
processes: ``cat``, ``sh``)."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import pytest

from gitpaas.datastores import common, mysql, postgres, redis
from gitpaas.errors import InvalidInput, ServiceError


def test_mysql_postgres_and_redis_share_one_credential_model():
    assert issubclass(mysql.Credentials, common.DatabaseCredentials)
    assert issubclass(postgres.Credentials, common.DatabaseCredentials)
    assert issubclass(redis.Credentials, common.SecretRepr)
    assert mysql.Server.__mro__[1] is common.AdminServer
    assert postgres.Server.__mro__[1] is common.AdminServer
    assert issubclass(mysql.MySQLDatastores, common.DatabaseDatastores)
    assert issubclass(postgres.PostgresDatastores, common.DatabaseDatastores)
    assert mysql.new_password is common.new_password  # still importable from mysql
    assert mysql.database_name is common.database_name


@pytest.mark.parametrize("creds, url", [
    (mysql.Credentials("h", 3306, "d", "u@x", "p/w:d"), "mysql://u%40x:p%2Fw%3Ad@h:3306/d"),
    (postgres.Credentials("h", 5433, "d", "u", "pw"), "postgres://u:pw@h:5433/d"),
    (redis.Credentials("gp-redis-shop", 6379, "pw"), "redis://:pw@gp-redis-shop:6379/0"),
])
def test_urls_round_trip_and_never_show_the_password(creds, url):
    assert creds.url() == url
    assert creds.password not in repr(creds) and "password='****'" in repr(creds)
    assert repr(creds).startswith("Credentials(host=")
    assert creds.password not in creds.url(reveal=False)
    module = sys.modules[type(creds).__module__]
    assert module.credentials_from_config(creds.config_vars()) == creds


def test_parse_url_refuses_other_schemes_and_bad_ports():
    assert common.parse_url("postgresql://u:p@h/db", ("postgres", "postgresql"), 5432) == \
        common.ParsedURL("h", 5432, "db", "u", "p")
    assert common.parse_url("mysql://u:p@h/db", ("postgres",), 5432) is None
    assert common.parse_url("redis://:p@h:port/0", ("redis",), 6379) is None


def test_admin_servers_check_their_urls():
    with pytest.raises(InvalidInput, match="GITPAAS_MYSQL_ADMIN_URL"):
        mysql.Server("")
    with pytest.raises(InvalidInput, match="postgres_admin_url must be a postgresql://"):
        postgres.Server("mysql://root@h/")
    server = postgres.Server("postgresql://admin:s%40@db:5433/base", app_port=6000)
    assert server.admin == {"host": "db", "port": 5433, "user": "admin", "password": "s@",
                            "dbname": "base"}
    assert server.port_for_apps == 6000 and mysql.Server("mysql://r@h").port_for_apps == 3306


def test_credential_files_are_private_and_removed():
    with common.private_file("gitpaas-test-", ".cnf", "secret\n") as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert Path(path).read_text() == "secret\n"
    assert not os.path.exists(path)
    with pytest.raises(RuntimeError), common.private_file("gitpaas-test-", "", "x") as path:
        raise RuntimeError
    assert not os.path.exists(path)
    with mysql.defaults_file("u", 'p"w\\', "h", 3306) as path:
        assert 'password="p"w\\\\"' in Path(path).read_text()
    with pytest.raises(InvalidInput, match="newline"):
        postgres._passfile_value("a\nb")


def test_stream_out_passes_bytes_on_and_reports_failures():
    chunks: list[bytes] = []
    assert common.stream_out(["sh", "-c", "printf 'a\\nb'"], chunks.append) == 3
    assert b"".join(chunks) == b"a\nb"
    with pytest.raises(ServiceError, match=r"sh failed \(3\): oops"):
        common.stream_out(["sh", "-c", "echo oops >&2; exit 3"], chunks.append)


def test_stream_in_sends_head_and_input_and_reports_the_last_line():
    assert common.stream_in(["cat"], io.BytesIO(b"rest"), head=b"head") == 8
    with pytest.raises(InvalidInput, match=r"the import failed \(1\): second$"):
        common.stream_in(["sh", "-c", "cat >/dev/null; echo first; echo second; exit 1"],
                         io.BytesIO(b"x"))
    with pytest.raises(InvalidInput, match="nothing to import"):
        common.first_bytes(io.BytesIO(b""), 5)


def test_find_program_names_the_package():
    assert common.find_program(("no-such-program-x", "sh"), "x").endswith("/sh")
    with pytest.raises(ServiceError, match="Debian package some-client"):
        common.find_program(("no-such-program-x",), "some-client")
