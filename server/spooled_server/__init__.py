"""Spooled: a durable, language-agnostic job queue on PostgreSQL."""

__version__ = "0.1.0"
