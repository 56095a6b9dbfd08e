"""Training: one loop (``Trainer``) for every method; what differs lives in a ``Recipe``."""
