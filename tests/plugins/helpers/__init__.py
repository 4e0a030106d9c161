"""Plain helpers (no fixtures) shared by several test files."""
