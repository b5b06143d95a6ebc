"""Run outputs: per-image CSV (incremental, resumable), summary, tables, plots, W&B."""
