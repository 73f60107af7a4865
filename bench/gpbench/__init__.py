"""The parts of ``bench/run``: push, receive, scale, router."""
