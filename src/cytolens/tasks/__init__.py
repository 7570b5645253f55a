"""Per-task target transforms and post-processing."""
