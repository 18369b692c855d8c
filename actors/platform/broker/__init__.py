"""The Redis broker and its consumer, batched Redis commands, the shared connection, and
the broker's assembly with every middleware (``assembly.setup_broker``)."""
