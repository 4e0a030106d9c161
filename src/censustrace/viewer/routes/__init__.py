"""The viewer's routes: ``session`` (login, logout), ``pages`` (HTML) and ``api`` (JSON)."""
