import pytest

from gitpaas import names
from gitpaas.errors import InvalidInput

BAD_APPS = ["..", ".git", "a;id", "a`id`", "$(id)", "a\nb", "-x", "Shop", "a" * 64, "",
            "café", "a--b", "shop-", "1shop", "a b", "a/b", "a.b", "git"]


@pytest.mark.parametrize("value", BAD_APPS)
def test_bad_app_names_are_refused_with_the_rule(value):
    with pytest.raises(InvalidInput) as info:
        names.app_name(value)
    assert "invalid app name" in str(info.value)
    assert "\n" not in str(info.value).replace(repr(value), "")


@pytest.mark.parametrize("value", ["shop", "a", "my-blog2", "x" * 30])
def test_good_app_names_pass_unchanged(value):
    assert names.app_name(value) == value


def test_app_name_length_limit():
    with pytest.raises(InvalidInput):
        names.app_name("x" * 31)


@pytest.mark.parametrize("value", ["www.example.com", "*.example.com", "a-b.c", "localhost"])
def test_hostnames(value):
    assert names.hostname(value) == value


@pytest.mark.parametrize("value", ["", "Example.com", "a..b", "-a.com", "a_b.com", "a.com:80",
                                   "*", "a.*.com"])
def test_bad_hostnames(value):
    with pytest.raises(InvalidInput):
        names.hostname(value)


@pytest.mark.parametrize("value", ["FOO", "_X", "database_url1"])
def test_config_keys(value):
    assert names.config_key(value) == value


@pytest.mark.parametrize("value", ["1A", "A-B", "A=B", "", "A B"])
def test_bad_config_keys(value):
    with pytest.raises(InvalidInput):
        names.config_key(value)


@pytest.mark.parametrize("value", ["main", "release/*", "v1.2"])
def test_branch_patterns(value):
    assert names.branch_pattern(value) == value


@pytest.mark.parametrize("value", ["../x", "-f", "a/", "a.lock", "a b", ""])
def test_bad_branch_patterns(value):
    with pytest.raises(InvalidInput):
        names.branch_pattern(value)


def test_any_accepted_app_name_is_a_safe_path_component():
    """Property: whatever text comes in, an accepted name is returned unchanged and can only
    name one directory under repos/ (no separator, no dot, no leading dash)."""
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=500, deadline=None, derandomize=True)
    @given(st.one_of(st.text(max_size=40), st.from_regex(r"[a-z][a-z0-9-]{0,35}", fullmatch=True)))
    def check(value):
        try:
            accepted = names.app_name(value)
        except InvalidInput as exc:
            assert "invalid app name" in str(exc)
            return
        assert accepted == value
        assert re.fullmatch(r"[a-z][a-z0-9-]{0,29}", value)
        assert "/" not in value and "." not in value and "\x00" not in value
        assert not value.endswith("-") and "--" not in value

    check()
