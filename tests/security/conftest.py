"""Issue 10: abuse, fault and permission tests. Fixtures come from tests/conftest.py."""
