"""Small shared helpers: atomic file writes, reproducibility and run-environment facts."""
