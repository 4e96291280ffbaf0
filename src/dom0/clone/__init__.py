"""Cloning a guest: a working twin with its own identity, planned first, then carried out with rollback."""
