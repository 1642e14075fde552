"""pullprint.filters."""
