"""Alembic migrations of the cloud database, applied at start by ``db.upgrade``."""
