"""The host's own network: bridges, bonds and their uplinks, read from its configuration files and its live state,
checked against the combinations known to fail, and planned afresh (`dom0 net check`, `dom0 net plan`)."""
