"""Item content embeddings (sentence-transformers, TF-IDF+SVD fallback, precomputed .npy), cached.

Importing the package registers the ``embed`` config section and the encoders.
"""

from pitrec.embed import config, encoders  # noqa: F401  (registers)
from pitrec.embed.stage import item_embeddings

__all__ = ["item_embeddings"]
