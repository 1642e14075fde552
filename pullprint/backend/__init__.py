"""pullprint.backend."""
