"""Governed shares: the policy check, the population and its transforms, the outbound file, the share
register and disclosure log, and the release ("no lineage, no share"). See docs/shares.md.

The step functions the share DAGs and the CLI call are ``censustrace.shares.steps``: ``check_share``,
``build_share``, ``release_share`` and ``run_share``.
"""
