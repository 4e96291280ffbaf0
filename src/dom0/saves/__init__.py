"""Saving guests to compressed images and restoring them, one at a time or all in parallel."""
