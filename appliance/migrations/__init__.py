"""Alembic migrations of the main database; one history for SQLite and PostgreSQL."""
