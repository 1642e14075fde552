"""pullprint.cups."""
