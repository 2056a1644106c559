"""Examples, each run by one command from the repository root (see the README)."""
