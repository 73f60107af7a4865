"""Pure logic of the swarm runtime: names, the config secret, task states, settings."""

from __future__ import annotations

import subprocess

import pytest

from gitpaas.errors import InvalidInput
from gitpaas.runtime.swarm import NAME_MAX, env_file, service_name, task_status
from gitpaas.settings import load


def test_service_names_carry_instance_app_release_process_within_63_characters():
    assert service_name("gp", "shop", 3, "web") == "gp_shop_v3_web"
    long = service_name("a" * 20, "b" * 30, 12345, "c" * 30)
    assert len(long) == NAME_MAX and long.startswith(f"{'a' * 20}_{'b' * 30}_h")
    assert long != service_name("a" * 20, "b" * 30, 12345, "c" * 29 + "d")
    assert long != service_name("a" * 20, "b" * 30, 12346, "c" * 30)


def test_the_config_secret_is_sourced_by_sh_exactly():
    env = {"A": "x'y", "B": "$(touch /tmp/pwned) `id` \\n", "EMPTY": ""}
    script = env_file(env).decode() + 'printf "%s|%s|%s" "$A" "$B" "$EMPTY"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == "x'y|$(touch /tmp/pwned) `id` \\n|"
    assert env_file({})  # never empty: Swarm refuses an empty secret


@pytest.mark.parametrize(("state", "status"), [
    ("running", "running"), ("pending", "created"), ("preparing", "created"),
    ("failed", "exited"), ("shutdown", "exited"), ("rejected", "exited"),
    ("complete", "exited")])
def test_task_states_read_as_container_states(state, status):
    assert task_status(state) == status


def test_runtime_setting():
    assert load({}, environ={}).runtime == "docker"
    swarm = load({"runtime": "swarm", "registry_listen": "10.0.0.1:5000"}, environ={})
    assert swarm.runtime == "swarm"
    with pytest.raises(InvalidInput, match="docker or swarm"):
        load({"runtime": "k8s"}, environ={})
    with pytest.raises(InvalidInput, match="registry_listen"):
        load({"runtime": "swarm"}, environ={})


def test_the_registry_password_is_made_once_and_its_htpasswd_follows_it(tmp_path):
    import bcrypt
    import yaml

    from gitpaas.registry import RegistryFiles
    from gitpaas.settings import Settings

    files = RegistryFiles(Settings(data_dir=tmp_path, registry_listen="10.0.0.1:5000"))
    files.ensure()
    user, password = files.credentials()
    hashed = files.htpasswd.read_text()
    files.ensure()  # idempotent: the same password, the same hash
    assert files.credentials() == (user, password) and files.htpasswd.read_text() == hashed
    assert bcrypt.checkpw(password.encode(), hashed.strip().split(":", 1)[1].encode())
    config = yaml.safe_load(files.config.read_text())
    assert config["auth"]["htpasswd"]["path"] == str(files.htpasswd)
    files.password_file.write_text("rotated-by-hand\n")  # an operator's new password
    files.ensure()
    assert bcrypt.checkpw(b"rotated-by-hand",
                          files.htpasswd.read_text().strip().split(":", 1)[1].encode())


def test_no_registry_password_is_a_clear_error(tmp_path):
    from gitpaas.errors import ServiceError
    from gitpaas.registry import RegistryFiles
    from gitpaas.settings import Settings

    files = RegistryFiles(Settings(data_dir=tmp_path, registry_listen="10.0.0.1:5000"))
    with pytest.raises(ServiceError, match="no password yet"):
        files.credentials()


@pytest.mark.parametrize(("prefix", "refused"), [([], True),
                                                 (["setpriv", "--no-new-privs"], False)])
def test_the_entry_point_runs_nothing_without_no_new_privileges(prefix, refused, tmp_path):
    """The replica's entry point, with this process's NoNewPrivs (0) and under setpriv
    (1): refused with its own exit status, or on to source the config (absent here)."""
    from gitpaas.runtime.swarm import ENTRY, NO_NNP_EXIT

    marker = tmp_path / "ran"
    done = subprocess.run([*prefix, *ENTRY, "touch", str(marker)], capture_output=True,
                          text=True)
    if refused:
        assert done.returncode == NO_NNP_EXIT
        assert "without no-new-privileges" in done.stderr
    else:
        assert done.returncode not in (0, NO_NNP_EXIT)  # /run/secrets/gitpaas-env: none
        assert "no-new-privileges" not in done.stderr
    assert not marker.exists()
