"""Tokenizers: item content embeddings -> semantic IDs (``SidTable``)."""

from pitrec.tokenizers.sid_table import SidTable

__all__ = ["SidTable"]
