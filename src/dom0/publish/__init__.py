"""Publishing private guests on the host's public addresses: a declarative table (publish.toml) of public
address:port -> guest:port, made into one nftables table owned by dom0 and replaced atomically (`dom0 publish`)."""
