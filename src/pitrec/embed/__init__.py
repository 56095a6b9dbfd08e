"""Item content embeddings (sentence-transformers, TF-IDF+SVD fallback, precomputed .npy), cached."""
