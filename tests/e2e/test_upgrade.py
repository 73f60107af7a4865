"""An upgrade from the first schema: a data dir made with the version-1 tables only (the
first release's state: keys, an app, its release and formation, encrypted config) is
migrated by ``gitpaas migrate`` and by ``gitpaas serve``, and its app serves again."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
from pathlib import Path

import pytest
import redis

from gitpaas import sshkeys
from gitpaas.secrets import Cipher
from gitpaas.store import schema
from tests.conftest import unique
from tests.harness import Server, make_key, wait_for

pytestmark = pytest.mark.timeout(600)


def context(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def old_image(docker_client, busybox_image: str, instance: str) -> str:
    """The image of the first release of ``old``: httpd, GREETING appended to its page."""
    image = f"{instance}/old:v1"
    docker_client.images.build(fileobj=context({
        "Dockerfile": f"FROM {busybox_image}\nCOPY index.html /www/index.html\n"
                      'CMD ["/bin/sh", "-c", "echo $GREETING >> /www/index.html;'
                      ' exec /bin/httpd -f -p 5000 -h /www"]\n',
        "index.html": "old app\n"}), custom_context=True, tag=image, rm=True)
    return image


def make_v1_data_dir(srv: Server, image: str) -> None:
    """State as the first schema wrote it, with one deployed app ``old`` running ``image``."""
    data = srv.data_dir
    data.mkdir(parents=True)
    cipher = Cipher.from_file(data / "secret.key")
    key = sshkeys.parse((srv.root / "id_admin.pub").read_text())
    db = sqlite3.connect(data / "state.db")
    with db:
        for sql in schema.statements("sqlite"):
            db.execute(sql)
        db.execute("INSERT INTO gp_meta (name, value) VALUES ('schema', '1')")
        now = time.time()
        db.execute("INSERT INTO gp_keys VALUES ('admin', ?, ?, 1, ?)",
                   (key.fingerprint, key.line, now))
        db.execute("INSERT INTO gp_apps VALUES ('old', 'admin', 'main', NULL, 1, ?)", (now,))
        db.execute("INSERT INTO gp_formation VALUES ('old', 'web', 1)")
        config = {"GREETING": "from-v1"}
        db.execute("INSERT INTO gp_config VALUES ('old', 'GREETING', ?)",
                   (cipher.encrypt(b"from-v1"),))
        db.execute("INSERT INTO gp_releases VALUES ('old', 1, ?, ?, ?, '{}', 'Deploy abc',"
                   " 'admin', ?, 'succeeded', '{}')",
                   (image, "a" * 40, cipher.encrypt(json.dumps(config).encode()), now))
    db.close()


def test_a_version_1_data_dir_migrates_and_its_app_serves(tmp_path, redis_url, docker_client,
                                                          clients, busybox_image):
    srv = Server(root=tmp_path, instance=unique("m"), redis_url=redis_url)
    make_key(tmp_path, "admin")
    srv.admin_key = tmp_path / "id_admin"
    image = old_image(docker_client, busybox_image, srv.instance)
    try:
        make_v1_data_dir(srv, image)
        migrated = srv.gitpaas("migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert f"schema version {schema.VERSION}" in migrated.stdout
        assert schema.VERSION >= 2  # there is a real step to apply
        db = sqlite3.connect(srv.data_dir / "state.db")
        assert db.execute("SELECT COUNT(*) FROM gp_backups").fetchone() == (0,)
        assert db.execute("SELECT value FROM gp_meta").fetchone() == (str(schema.VERSION),)
        db.close()
        srv.start()  # serve migrates too (nothing left) and the reconciler starts the app
        deadline = time.monotonic() + 60
        while srv.get(srv.host("old"))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert srv.get(srv.host("old")) == (200, "old app\nfrom-v1\n")
        assert srv.ssh("config:get", "old", "GREETING").stdout.strip() == "from-v1"
        doctor = srv.gitpaas("doctor")
        assert "backup" not in doctor.stdout
    finally:
        srv.cleanup(docker_client)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{srv.instance}:*", count=1000):
            client.delete(key)
        client.close()


UPGRADE = Path(__file__).resolve().parents[2] / "scripts" / "upgrade"


def side_venv(directory: Path) -> Path:
    """A virtualenv of its own for ``scripts/upgrade`` to install into, that sees this
    one's packages (a .pth file adds its site dir) and has a ``gitpaas`` already (as an
    install the upgrade starts from has), so the script's pip changes nothing here."""
    venv = directory / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "gitpaas-tests.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    script = venv / "bin" / "gitpaas"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom gitpaas.cli import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    return venv


def serve_pid(srv: Server) -> int:
    return int((srv.data_dir / "serve.pid").read_text())


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pid(pid: int) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)


def test_scripts_upgrade_backs_up_migrates_and_restarts_serve(tmp_path, redis_url,
                                                             docker_client, clients,
                                                             busybox_image):
    """``scripts/upgrade`` run for real (no systemd here: the nohup path): a backup with
    the running version, this checkout installed into the install's virtualenv, serve
    stopped, the state migrated, serve started again; the app serves throughout after."""
    password = tmp_path / "backup.password"
    password.write_text("an upgrade passphrase\n")
    srv = Server(root=tmp_path, instance=unique("u"), redis_url=redis_url, extra_env={
        "GITPAAS_BACKUP_REPO": str(tmp_path / "restic"),
        "GITPAAS_BACKUP_PASSWORD_FILE": str(password), "GITPAAS_BACKUP_SCHEDULE": "off"})
    make_key(tmp_path, "admin")
    srv.admin_key = tmp_path / "id_admin"
    image = old_image(docker_client, busybox_image, srv.instance)
    venv = side_venv(tmp_path)
    pids: list[int] = []
    try:
        make_v1_data_dir(srv, image)
        srv.start()  # the running install (it migrated its state when it started)
        (srv.data_dir / "serve.pid").write_text(f"{srv.proc.pid}\n")
        pids.append(srv.proc.pid)
        wait_for(lambda: srv.get(srv.host("old"))[0] == 200, 60, "the old app to serve")
        env = {**srv.env, "GITPAAS_VENV": str(venv),
               "GITPAAS_LOG_FILE": str(srv.data_dir / "serve.log")}

        # A backup that fails stops the upgrade before anything changed.
        broken = subprocess.run(
            ["bash", str(UPGRADE)], capture_output=True, text=True, timeout=600,
            env={**env, "GITPAAS_BACKUP_REPO": str(password / "not-a-repo")})
        assert broken.returncode == 1, broken.stderr
        assert "the backup failed: nothing was upgraded" in broken.stderr
        assert alive(srv.proc.pid) and not (venv / ".gitpaas-installed").exists()

        answers: list[int] = []
        done = threading.Event()

        def poll() -> None:  # the app, through the edge, while the upgrade runs
            while not done.wait(0.05) and len(answers) < 20_000:
                try:
                    answers.append(srv.get(srv.host("old"), timeout=5)[0])
                except OSError:
                    answers.append(0)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            upgraded = subprocess.run(["bash", str(UPGRADE)], capture_output=True, text=True,
                                      timeout=900, env=env)
        finally:
            done.set()
            poller.join(10)
        failed = len([a for a in answers if a != 200])
        print(f"during the upgrade: {len(answers)} requests, {failed} not 200")
        assert answers and failed == 0  # the edge (nginx) outlives serve's restart
        assert upgraded.returncode == 0, upgraded.stderr[-3000:]
        assert "backing up with the running version" in upgraded.stderr
        assert "Snapshot" in upgraded.stderr and "upgraded to" in upgraded.stderr
        assert "an upgrade passphrase" not in upgraded.stderr
        new = serve_pid(srv)
        pids.append(new)
        assert srv.proc.poll() is not None and new != srv.proc.pid and alive(new)
        assert (venv / ".gitpaas-installed").exists()  # this checkout, pip-installed
        shown = subprocess.run([str(venv / "bin" / "pip"), "show", "gitpaas"],
                               capture_output=True, text=True, timeout=120)
        assert str(UPGRADE.parents[1]) in shown.stdout  # editable, from this checkout
        assert len(json.loads(srv.gitpaas("backups", "--json").stdout)) == 1
        wait_for(lambda: srv.get(srv.host("old")) == (200, "old app\nfrom-v1\n"), 60,
                 "the app to serve after the upgrade")
        assert srv.ssh("config:get", "old", "GREETING").stdout.strip() == "from-v1"
        db = sqlite3.connect(srv.data_dir / "state.db")
        assert db.execute("SELECT value FROM gp_meta").fetchone() == (str(schema.VERSION),)
        db.close()
    finally:
        for pid in pids:
            stop_pid(pid)
        srv.cleanup(docker_client)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{srv.instance}:*", count=1000):
            client.delete(key)
        client.close()
