"""Integrations with other frameworks; each needs its extra."""
