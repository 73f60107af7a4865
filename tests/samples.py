"""Sample apps of each buildpack (tests/apps/) and the wheel the python one installs."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"


def make_wheel(name: str, version: str, module: str, source: str) -> tuple[str, bytes]:
    """A minimal pure-python wheel (PEP 427) holding one module, made without pip."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{module}.py": source.encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: gitpaas-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return f"{dist}-py3-none-any.whl", buf.getvalue()


HELLO_WHEEL = make_wheel(
    "gitpaas-hello", "1.0", "gitpaas_hello",
    'def greet(who):\n    return f"hello from {who} via gitpaas_hello"\n',
)


def app_files(app_dir: Path) -> dict[str, bytes]:
    """The files of a sample app, by repo-relative path."""
    return {
        p.relative_to(app_dir).as_posix(): p.read_bytes()
        for p in sorted(app_dir.rglob("*"))
        if p.is_file()
    }


def sample_app(name: str) -> dict[str, bytes]:
    """The sample app of buildpack ``name``; the python one with its wheel in wheels/."""
    files = app_files(APPS / name)
    if name == "python":
        wheel_name, wheel = HELLO_WHEEL
        files[f"wheels/{wheel_name}"] = wheel
    return files


EXPECTED = {
    "static": "hello from static",
    "python": "hello from python via gitpaas_hello",
    "node": "hello from node v",
    "php": "hello from php 42",
}
