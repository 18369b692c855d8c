"""Platform tests share the root conftest's worker processes."""
