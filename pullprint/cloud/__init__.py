"""pullprint.cloud."""
