"""Revisions, applied in ``down_revision`` order."""
