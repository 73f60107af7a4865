from pathlib import Path

import pytest

from gitpaas import settings
from gitpaas.errors import InvalidInput


def test_defaults():
    s = settings.load(environ={})
    assert s.data_dir == Path("/var/lib/gitpaas")
    assert s.ssh_listen == "0.0.0.0:2222" and s.http_listen == "0.0.0.0:8080"
    assert s.domain == "paas.localhost" and s.instance == "gitpaas"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.database == "sqlite:////var/lib/gitpaas/state.db"
    assert s.routes_prefix == "gitpaas:"


def test_environment_contract(tmp_path):
    env = {"GITPAAS_DATA_DIR": str(tmp_path), "GITPAAS_SSH_LISTEN": "127.0.0.1:2200",
           "GITPAAS_HTTP_LISTEN": "127.0.0.1:8000", "GITPAAS_DOMAIN": "apps.example.com",
           "GITPAAS_REDIS_URL": "redis://r:1/2", "GITPAAS_DATABASE_URL": "mysql://u:p@h/db",
           "GITPAAS_INSTANCE": "blue", "GITPAAS_HEALTH_TIMEOUT": "3.5",
           "GITPAAS_CREATE_ON_PUSH": "false"}
    s = settings.load(environ=env)
    assert s.data_dir == tmp_path and s.listen("ssh") == ("127.0.0.1", 2200)
    assert s.listen("http") == ("127.0.0.1", 8000) and s.domain == "apps.example.com"
    assert s.redis_url == "redis://r:1/2" and s.database == "mysql://u:p@h/db"
    assert s.instance == "blue" and s.routes_prefix == "blue:"
    assert s.health_timeout == 3.5 and s.create_on_push is False


def test_yaml_then_env_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("domain: yaml.example\ninstance: yamlinst\nstop_timeout: 7\n")
    s = settings.load(environ={"GITPAAS_INSTANCE": "envinst"}, config_file=path)
    assert (s.domain, s.instance, s.stop_timeout) == ("yaml.example", "envinst", 7)
    s = settings.load({"instance": "flag"}, environ={"GITPAAS_INSTANCE": "envinst"},
                      config_file=path)
    assert s.instance == "flag"


def test_yaml_in_data_dir_is_read(tmp_path):
    (tmp_path / "gitpaas.yaml").write_text("domain: dd.example\n")
    assert settings.load(environ={"GITPAAS_DATA_DIR": str(tmp_path)}).domain == "dd.example"


@pytest.mark.parametrize("env", [{"GITPAAS_INSTANCE": "Bad-Name"},
                                 {"GITPAAS_DOMAIN": "not a domain"},
                                 {"GITPAAS_STOP_TIMEOUT": "soon"}])
def test_bad_settings_are_refused(env):
    with pytest.raises(InvalidInput):
        settings.load(environ=env)


def test_unknown_yaml_key_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("domian: typo.example\n")
    with pytest.raises(InvalidInput, match="unknown setting"):
        settings.load(environ={}, config_file=path)


# -- issue 13: strict settings: a value that does not parse is an error naming the key ----

BOOLS = [f.name for f in settings.fields(settings.Settings) if f.type == "bool"]
INTS = [f.name for f in settings.fields(settings.Settings) if f.type == "int"]
FLOATS = [f.name for f in settings.fields(settings.Settings) if f.type == "float"]


def test_every_typed_field_is_covered():
    assert "router_https_redirect" in BOOLS and "stop_timeout" in INTS
    assert "health_timeout" in FLOATS and len(BOOLS + INTS + FLOATS) > 20


@pytest.mark.parametrize("name", BOOLS)
@pytest.mark.parametrize("raw", ["ture", "2", "", " ", "enabled", "yess", "Y"])
def test_an_unparsable_boolean_is_an_error_naming_the_key(name, raw):
    if raw == "":
        # An empty variable means "unset" (the default), as it always did.
        assert settings.load(environ={f"GITPAAS_{name.upper()}": raw}) is not None
        return
    with pytest.raises(InvalidInput) as info:
        settings.load(environ={f"GITPAAS_{name.upper()}": raw})
    assert name in info.value.message and f"GITPAAS_{name.upper()}" in info.value.message


@pytest.mark.parametrize("raw, value", [
    ("true", True), ("TRUE", True), (" yes ", True), ("on", True), ("1", True),
    ("false", False), ("False", False), ("no", False), ("off", False), ("0", False),
])
def test_booleans_that_parse(raw, value):
    s = settings.load(environ={"GITPAAS_ROUTER_HTTPS_REDIRECT": raw})
    assert s.router_https_redirect is value


@pytest.mark.parametrize("name", INTS)
@pytest.mark.parametrize("raw", ["ten", "1.5", "1e3", "²", "٣", "0x10", "true"])
def test_an_unparsable_integer_is_an_error_naming_the_key(name, raw):
    with pytest.raises(InvalidInput) as info:
        settings.load(environ={f"GITPAAS_{name.upper()}": raw})
    assert name in info.value.message


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("raw", ["soon", "1,5", "nan", "inf", "-inf", "²", "true"])
def test_an_unparsable_number_is_an_error_naming_the_key(name, raw):
    with pytest.raises(InvalidInput) as info:
        settings.load(environ={f"GITPAAS_{name.upper()}": raw})
    assert name in info.value.message


@pytest.mark.parametrize("yaml_text, name", [
    ("router_https_redirect: ture\n", "router_https_redirect"),
    ("router_https_redirect: 2\n", "router_https_redirect"),
    ("stop_timeout: 2.5\n", "stop_timeout"),
    ("stop_timeout: true\n", "stop_timeout"),
    ("stop_timeout:\n", "stop_timeout"),
    ("health_timeout: [1]\n", "health_timeout"),
    ("health_timeout: yes\n", "health_timeout"),
    ("domain: [a, b]\n", "domain"),
    ("base_images: [a]\n", "base_images"),
    ("data_dir: {}\n", "data_dir"),
])
def test_yaml_values_of_the_wrong_type_are_errors_naming_the_key(tmp_path, yaml_text, name):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(InvalidInput) as info:
        settings.load(environ={}, config_file=path)
    assert name in info.value.message and str(path) in info.value.message


def test_yaml_values_of_the_right_type(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("router_https_redirect: true\ncreate_on_push: no\nstop_timeout: 7\n"
                    "health_timeout: 3\nkeep_releases: 4.0\nwebhook_url:\n"
                    "base_images: {static: x/y}\n")
    s = settings.load(environ={}, config_file=path)
    assert s.router_https_redirect is True and s.create_on_push is False
    assert s.stop_timeout == 7 and s.health_timeout == 3.0 and s.keep_releases == 4
    assert s.webhook_url == "" and s.base_images == {"static": "x/y"}


def test_the_server_refuses_to_start_on_a_bad_value(tmp_path):
    import subprocess
    import sys

    gitpaas = str(Path(sys.executable).parent / "gitpaas")
    result = subprocess.run([gitpaas, "serve", "--no-router"], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin",
                                             "GITPAAS_DATA_DIR": str(tmp_path),
                                             "GITPAAS_ROUTER_HTTPS_REDIRECT": "ture"})
    assert result.returncode != 0
    assert result.stderr.rstrip().splitlines() == [
        " !     invalid setting router_https_redirect='ture' (from "
        "GITPAAS_ROUTER_HTTPS_REDIRECT): expected true or false (also yes/no, on/off, 1/0)"]


@pytest.mark.parametrize("name, raw", [
    ("ssh_listen", "0.0.0.0:ssh"), ("http_listen", "8080"), ("http_listen", "::1:8080"),
    ("router_https_listen", "127.0.0.1:70000"), ("router_admin_listen", "[127.0.0.1]:1"),
    ("ssh_listen", "bad_host:22"), ("http_listen", "127.0.0.1:٨٠"),
])
def test_a_bad_listen_address_is_an_error_naming_the_setting(name, raw):
    with pytest.raises(InvalidInput, match=f"invalid setting {name}="):
        settings.load({name: raw}, environ={})


def test_listen_addresses_are_parsed_in_one_place_for_ssh_and_the_edge(tmp_path):
    from gitpaas.edge.config import EdgeConfig

    s = settings.load({"http_listen": "[::1]:8081", "ssh_listen": ":2200",
                       "router_https_listen": "localhost:8443", "data_dir": str(tmp_path)},
                      environ={})
    assert s.listen("http") == ("::1", 8081) and s.listen("ssh") == ("0.0.0.0", 2200)
    edge = EdgeConfig.from_settings(s)
    assert (edge.listen, edge.https_listen, edge.admin_listen) == (
        ("::1", 8081), ("localhost", 8443), None)
    assert not hasattr(__import__("gitpaas.edge.config").edge.config, "split_listen")


@pytest.mark.parametrize("raw", ["10:30", "100:30:10", "1:200:5", "lots", "-1"])
def test_a_bad_ssh_max_startups_is_an_error_naming_it(raw):
    with pytest.raises(InvalidInput, match="invalid setting ssh_max_startups"):
        settings.load({"ssh_max_startups": raw}, environ={})


def test_ssh_max_startups_has_room_for_ci_pushes():
    assert settings.load(environ={}).ssh_max_startups == "64:30:192"
    assert settings.load(environ={"GITPAAS_SSH_MAX_STARTUPS": "0"}).ssh_max_startups == "0"
