"""Base image recipes: parsing, hashing, the mmdebstrap command (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitpaas import images
from gitpaas.errors import InvalidInput, NotFound
from gitpaas.settings import Settings


def write_recipe(root: Path, name: str, text: str, files: dict[str, str] | None = None) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "image.yaml").write_text(text)
    for rel, content in (files or {}).items():
        (directory / rel).write_text(content)
    return directory


def test_shipped_recipes_parse():
    names = images.recipe_names()
    assert {"python", "node", "php", "static"} <= set(names)
    for name in names:
        recipe = images.load_recipe(name)
        assert recipe.suite == "bookworm"
        assert recipe.packages
        # Buildpacks' bases work in /app; service images (redis) in their data dir.
        assert recipe.workdir == ("/var/lib/redis" if name == "redis" else "/app")


def test_image_name_is_content_addressed_unless_overridden():
    digest = images.recipe_hash(images.load_recipe("python"))
    assert images.image_name(Settings(), "python") == f"gitpaas-base/python:{digest[:12]}"
    settings = Settings(base_images={"python": "acme/py:1"})
    assert images.image_name(settings, "python") == "acme/py:1"
    assert images.image_name(settings, "php").startswith("gitpaas-base/php:")
    with pytest.raises(NotFound):
        images.image_name(Settings(), "cobol")


def test_unknown_recipe_lists_the_known_ones(tmp_path):
    write_recipe(tmp_path, "alpha", "suite: bookworm\n")
    with pytest.raises(NotFound, match="'beta' .*known: alpha"):
        images.load_recipe("beta", tmp_path)
    with pytest.raises(NotFound):
        images.load_recipe("../alpha", tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "packages: [a]\n",  # no suite
        "suite: bookworm\npackages: a\n",  # not a list
        "suite: bookworm\nbogus: 1\n",  # unknown key
        "suite: bookworm\nfiles: [{src: missing, dest: /x}]\n",
        "suite: bookworm\nfiles: [{src: ../escape, dest: /x}]\n",
        "- a list\n",
    ],
)
def test_invalid_recipes_are_rejected(tmp_path, text):
    write_recipe(tmp_path, "bad", text)
    (tmp_path / "escape").write_text("outside")
    with pytest.raises(InvalidInput):
        images.load_recipe("bad", tmp_path)


def test_mmdebstrap_command_is_an_argument_list(tmp_path):
    write_recipe(
        tmp_path, "x",
        "suite: bookworm\nvariant: essential\nhooks: [merged-usr]\n"
        "packages: [python3, python3-venv]\nrun:\n  - [python3, -m, venv, /opt/my venv]\n",
    )
    argv = images.mmdebstrap_command(images.load_recipe("x", tmp_path), Path("/tmp/o.tar"))
    assert argv[0] == "mmdebstrap"
    assert "--variant=essential" in argv
    assert "--include=python3,python3-venv" in argv
    assert "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr" in argv
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert """--customize-hook=chroot "$1" python3 -m venv '/opt/my venv'""" in argv
    assert argv[-2:] == ["bookworm", "/tmp/o.tar"]


def test_import_changes_carry_config_and_hash(tmp_path):
    write_recipe(
        tmp_path, "x",
        'suite: bookworm\nenv: {LANG: C.UTF-8, GREETING: "a b"}\nworkdir: /app\n'
        "cmd: [python3, app.py]\nuser: nobody\n",
    )
    changes = images.import_changes(images.load_recipe("x", tmp_path), "abc")
    assert 'ENV GREETING="a b"' in changes
    assert any(c.startswith("ENV PATH=") for c in changes)
    assert "WORKDIR /app" in changes
    assert "USER nobody" in changes
    assert 'CMD ["python3", "app.py"]' in changes
    assert f"LABEL {images.HASH_LABEL}=abc gitpaas.recipe=x" in changes


def test_recipe_hash_follows_every_file_of_the_recipe(tmp_path):
    directory = write_recipe(
        tmp_path, "x", "suite: bookworm\nfiles: [{src: start, dest: /start, mode: '0755'}]\n",
        {"start": "#!/bin/sh\n"},
    )
    first = images.recipe_hash(images.load_recipe("x", tmp_path))
    assert images.recipe_hash(images.load_recipe("x", tmp_path)) == first
    (directory / "start").write_text("#!/bin/sh\necho changed\n")
    second = images.recipe_hash(images.load_recipe("x", tmp_path))
    assert second != first
    (directory / "image.yaml").write_text("suite: trixie\n")
    assert images.recipe_hash(images.load_recipe("x", tmp_path)) not in {first, second}


def test_recipe_files_keep_their_mode(tmp_path):
    write_recipe(
        tmp_path, "x", "suite: bookworm\nfiles: [{src: s, dest: /usr/local/bin/s, mode: '0755'}]\n",
        {"s": "x"},
    )
    (spec,) = images.load_recipe("x", tmp_path).files
    assert spec == images.FileSpec("s", "/usr/local/bin/s", 0o755)


def test_build_images_rejects_unknown_names_before_touching_docker(tmp_path):
    write_recipe(tmp_path, "alpha", "suite: bookworm\n")
    with pytest.raises(NotFound):
        images.build_images(Settings(), ["nope"], images_dir=tmp_path, client=object())


def test_main_reports_user_errors(capsys):
    assert images.main(["no-such-image"]) == 1
    assert "no base image recipe named 'no-such-image'" in capsys.readouterr().err


def test_recipe_files_are_uploaded_before_the_run_commands(tmp_path):
    directory = write_recipe(
        tmp_path, "x",
        "suite: bookworm\nfiles: [{src: s, dest: /usr/local/bin/s, mode: '0755'}]\n"
        "run: [[s, --setup]]\n",
        {"s": "#!/bin/sh\n"},
    )
    argv = images.mmdebstrap_command(images.load_recipe("x", tmp_path), Path("/tmp/o.tar"))
    upload = f"--customize-hook=upload {directory.resolve() / 's'} /usr/local/bin/s"
    chmod = '--customize-hook=chroot "$1" chmod 0755 /usr/local/bin/s'
    run = '--customize-hook=chroot "$1" s --setup'
    assert argv.index(upload) < argv.index(chmod) < argv.index(run)


def test_recipe_hash_ignores_modes_and_hidden_files(tmp_path):
    directory = write_recipe(tmp_path, "x", "suite: bookworm\n", {"start": "#!/bin/sh\n"})
    first = images.recipe_hash(images.load_recipe("x", tmp_path))
    (directory / "start").chmod(0o700)
    (directory / ".image.yaml.swp").write_text("editor state")
    (directory / "image.yaml~").write_text("backup")
    assert images.recipe_hash(images.load_recipe("x", tmp_path)) == first
