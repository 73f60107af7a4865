"""``config`` masks what a datastore set, as mysql:info and postgres:info do."""

from gitpaas.datastores import mask_secrets


def test_mysql_vars_have_their_password_masked():
    config = {"DATABASE_URL": "mysql://gitpaas_blog:s3cr%40t@172.17.0.1:3306/gitpaas_blog",
              "DB_HOST": "172.17.0.1", "DB_NAME": "gitpaas_blog", "DB_USER": "gitpaas_blog",
              "DB_PASSWORD": "s3cr@t", "OTHER": "s3cr@t"}
    assert mask_secrets(config) == {
        **config, "DB_PASSWORD": "****",
        "DATABASE_URL": "mysql://gitpaas_blog:****@172.17.0.1:3306/gitpaas_blog"}


def test_postgres_url_and_odd_values():
    assert mask_secrets({"DATABASE_URL": "postgres://u:p@h:5432/d"}) == {
        "DATABASE_URL": "postgres://u:****@h:5432/d"}
    for url in ("postgres://u@h/d", "not a url", "", "sqlite:///x@y"):
        assert mask_secrets({"DATABASE_URL": url}) == {"DATABASE_URL": url}
    assert mask_secrets({"DB_PASSWORD": ""}) == {"DB_PASSWORD": ""}


def test_redis_url():
    assert mask_secrets({"REDIS_URL": "redis://:pw@172.17.0.1:6390/0", "A": "b"}) == {
        "REDIS_URL": "redis://:****@172.17.0.1:6390/0", "A": "b"}
