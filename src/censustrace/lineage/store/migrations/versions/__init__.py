"""Revisions of the lineage store schema, oldest first."""
