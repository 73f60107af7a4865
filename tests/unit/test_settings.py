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
