"""Fixtures shared by all tests: real services (Mosquitto, S3 over HTTP) live in tests/fixtures."""

pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.broker"]
