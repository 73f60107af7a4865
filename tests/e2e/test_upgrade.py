"""An upgrade from the first schema: a data dir made with the version-1 tables only (the
first release's state: keys, an app, its release and formation, encrypted config) is
migrated by ``gitpaas migrate`` and by ``gitpaas serve``, and its app serves again."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import time

import pytest
import redis

from gitpaas import sshkeys
from gitpaas.secrets import Cipher
from gitpaas.store import schema
from tests.conftest import unique
from tests.harness import Server, make_key

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
    image = f"{srv.instance}/old:v1"
    docker_client.images.build(fileobj=context({
        "Dockerfile": f"FROM {busybox_image}\nCOPY index.html /www/index.html\n"
                      'CMD ["/bin/sh", "-c", "echo $GREETING >> /www/index.html;'
                      ' exec /bin/httpd -f -p 5000 -h /www"]\n',
        "index.html": "old app\n"}), custom_context=True, tag=image, rm=True)
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
