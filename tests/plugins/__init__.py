"""Test plugins: every shared fixture lives in a module here, registered by ``pytest_plugins`` in
tests/conftest.py (the only conftest that may list plugins). Plain helpers shared by several test files
are in ``tests.plugins.helpers``; test modules import those, never another test module or a conftest
(tests/test_architecture.py checks it)."""
