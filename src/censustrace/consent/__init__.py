"""Consent and purpose checks: policies (fields, purposes, rules, agreements), their evaluation, and
pupils' recorded decisions (objections, consents)."""
