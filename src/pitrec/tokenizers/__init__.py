"""Tokenizers: item content embeddings -> semantic IDs (``SidTable``).

Importing the package registers the ``tokenizer`` config section and every tokenizer
(``rqkmeans``, ``rqkmeans_balanced``, ``rqvae``, ``import``) in ``TOKENIZERS``.
"""

from pitrec.tokenizers import config, importer, kmeans, rqvae  # noqa: F401  (registers)
from pitrec.tokenizers.sid_table import SidTable

__all__ = ["SidTable"]
