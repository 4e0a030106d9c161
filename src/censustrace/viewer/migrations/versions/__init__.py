"""Revisions of the viewer's tables, oldest first."""
