"""pullprint.cloudsync."""
