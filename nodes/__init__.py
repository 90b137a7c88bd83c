"""rillet nodes."""
