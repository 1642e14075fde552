"""pullprint.daemon."""
