"""Verdicts Mailer: the weekly newsletter engine (data, rendering, delivery)."""
