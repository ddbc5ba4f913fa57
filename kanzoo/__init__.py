"""kanzoo."""
