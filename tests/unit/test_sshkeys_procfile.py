import base64
import struct
import subprocess

import pytest

from gitpaas import procfile, sshkeys
from gitpaas.errors import InvalidInput


def test_fingerprint_matches_ssh_keygen(tmp_path):
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    line = (tmp_path / "id.pub").read_text()
    expected = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key) + ".pub"],
                              capture_output=True, text=True, check=True).stdout.split()[1]
    parsed = sshkeys.parse(line)
    assert parsed.fingerprint == expected
    assert parsed.kind == "ssh-ed25519"


@pytest.mark.parametrize("text", ["", "hello", "ssh-ed25519 !!!notbase64", "ssh-dss AAAA",
                                  "ssh-ed25519 AAAA\nssh-ed25519 AAAA"])
def test_bad_keys(text):
    with pytest.raises(InvalidInput):
        sshkeys.parse(text)


def test_type_must_match_blob():
    blob = struct.pack(">I", 7) + b"ssh-rsa" + b"x" * 32
    with pytest.raises(InvalidInput, match="does not match"):
        sshkeys.parse("ssh-ed25519 " + base64.b64encode(blob).decode())


def test_procfile():
    text = "# comment\nweb: ./server --port $PORT\n\nworker:  python worker.py \n"
    assert procfile.parse(text) == {"web": "./server --port $PORT",
                                    "worker": "python worker.py"}


@pytest.mark.parametrize("text", ["web", "web:", "Web: x", "we b: x"])
def test_bad_procfile(text):
    with pytest.raises(InvalidInput):
        procfile.parse(text)
