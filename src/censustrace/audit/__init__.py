"""Tamper-evident audit trail: hash chains over the share register and the access log, their heads
witnessed outside each table, and ``censustrace audit verify`` (see docs/operations.md, "Audit trail")."""
