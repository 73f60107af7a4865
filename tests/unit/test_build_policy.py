"""Issue 11, findings 2 and 3: what a tenant's Dockerfile may not ask of the engine."""

from __future__ import annotations

import pytest

from gitpaas.build.policy import ImagePolicy, check_dockerfile, reserved_labels
from gitpaas.errors import DeployError

POLICY = ImagePolicy("t1", "shop", ("debian:bookworm*",))


@pytest.mark.parametrize("text", [
    "FROM gitpaas-base/python\nCOPY . /app\n",
    "FROM gitpaas-base/python:3f9a2b\n",
    "FROM t1/shop:v3\n",
    "from scratch\n",
    "FROM debian:bookworm-slim\n",
    "ARG BASE=gitpaas-base/node\nFROM ${BASE} AS build\nRUN make\n"
    "FROM scratch\nCOPY --from=build /app /app\nCOPY --from=0 /x /y\n",
    "FROM gitpaas-base/node AS Deps\nFROM deps\n",  # stage names are case-insensitive
    "ARG V\nFROM gitpaas-base/php${V:+:$V}\n",
    "FROM t1/shop\nLABEL org.opencontainers.image.title=shop\nADD vendor.tar /v/\n",
    "FROM t1/shop\nRUN echo FROM t1/victim:v1 \\\n  && true\n",  # a word inside RUN
])
def test_allowed(text):
    check_dockerfile(text, POLICY)


@pytest.mark.parametrize(("text", "reason"), [
    ("FROM t1/victim:v1\nRUN cat /app/secret\n", "FROM t1/victim:v1 is not allowed"),
    ("FROM t2/shop:v1\n", "not allowed"),  # the same app name in another instance
    ("FROM t1/shop@sha256:" + "a" * 64 + "\n", "not allowed"),
    ("FROM 0123456789ab\n", "not allowed"),  # an image id
    ("FROM busybox\n", "FROM busybox is not allowed"),
    ("ARG B=t1/victim:v1\nFROM $B\n", "FROM t1/victim:v1"),
    ("FROM ${NOPE}\n", "not allowed"),
    ("FROM scratch\nCOPY --from=t1/victim:v1 /app /stolen\n", "COPY --from t1/victim:v1"),
    ("FROM scratch\nCOPY --from=1 /app /x\n", "COPY --from 1"),  # not an earlier stage
    ("FROM scratch\nCOPY --from=$X /a /b\n", "literally"),
    ("FROM scratch\nADD http://127.0.0.1:8080/ /x\n", "ADD of a URL"),
    ("FROM scratch\nadd --chown=1 https://example.com/a.tgz /x\n", "ADD of a URL"),
    ("FROM scratch\nLABEL gitpaas.app=victim gitpaas.release=4\n", "LABEL gitpaas.app"),
    ("FROM scratch\nLABEL \"gitpaas.instance\"=t1\n", "reserved"),
    ("FROM scratch\nLABEL gitpaas.process web\n", "reserved"),
    ("FROM scratch\nARG K=gitpaas.app\nLABEL $K=victim\n", "reserved"),
    ("FROM t1/shop\nONBUILD COPY --from=t1/victim:v1 /a /b\n", "not allowed"),
    ("FROM t1/shop\nONBUILD ADD http://127.0.0.1/ /x\n", "ADD of a URL"),
    ("FROM t1/shop\nONBUILD LABEL gitpaas.app=victim\n", "reserved"),
    ("RUN true\n", "no FROM"),
])
def test_refused_with_the_line_and_a_reason(text, reason):
    with pytest.raises(DeployError) as err:
        check_dockerfile(text, POLICY)
    assert reason in err.value.message and "\n" not in err.value.message


def test_build_args_resolve_from():
    check_dockerfile("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n", POLICY,
                     {"BASE_IMAGE": "gitpaas-base/python:abc"})


def test_reserved_labels_of_a_built_image():
    labels = {"gitpaas.recipe-hash": "x", "gitpaas.app": "victim", "maintainer": "me"}
    assert reserved_labels(labels, ["gitpaas.recipe-hash"]) == ["gitpaas.app"]
    assert reserved_labels(None) == []
