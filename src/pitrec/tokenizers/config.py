"""Config section ``tokenizer``: how item embeddings become semantic IDs.

Everything here except the cache settings is part of the SID cache key, so changing any knob
builds a new table instead of silently reusing an old one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pitrec.config import Section
from pitrec.registry import SECTIONS


class KMeansConfig(Section):
    max_iter: int = Field(100, ge=1)  # Lloyd iterations of scikit-learn KMeans per level
    n_init: int = Field(1, ge=1)
    balanced_iter: int = Field(20, ge=1)  # assign-under-capacity / re-centre rounds (balanced variant)


class RQVAEConfig(Section):
    hidden: list[int] = Field(default_factory=lambda: [512, 256, 128])  # TIGER's MLP widths
    latent_dim: int = Field(32, ge=1)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    commitment: float = Field(0.25, ge=0)  # beta of the commitment term
    # epochs between dead-code re-seeding (0 = never); every epoch is what keeps all codes alive
    # on Beauty (every 5 epochs: 15 of 256 first-level codes left after 10 epochs)
    reseed_dead_every: int = Field(1, ge=0)
    device: str = "cpu"  # cpu | cuda | auto


@SECTIONS.register("tokenizer")
class TokenizerConfig(Section):
    name: str = "rqkmeans"  # rqkmeans | rqkmeans_balanced | rqvae | import (TOKENIZERS)
    levels: int = Field(3, ge=1)
    codebook_size: int | list[int] = 256  # one size for every level, or one per level
    # what happens when items share a SID (see tokenizers.collisions):
    #   extra_level: append a level numbering the items of each shared SID 0,1,2... (unique SIDs)
    #   keep: leave them shared (the index then maps one SID to several items)
    #   error: refuse the table
    collision: Literal["extra_level", "keep", "error"] = "extra_level"
    seed: int | None = None  # None = run.seed
    import_path: str | None = None  # name=import: a pitrec table or a {key: [codes]} JSON[.gz]
    import_key_offset: int = 1  # raw item id = int(key) + offset (LETTER keys are item_id - 1)
    # > 0: fit on [content ; collaborative_weight x a collaborative embedding of this many dims]
    # from the training sequences (tokenizers/collaborative.py); 0: content only (TIGER's SIDs)
    collaborative_dim: int = Field(0, ge=0)
    collaborative_window: int = Field(3, ge=1)  # items at most this many positions apart co-occur
    collaborative_weight: float = Field(1.0, ge=0)
    kmeans: KMeansConfig = Field(default_factory=KMeansConfig)
    rqvae: RQVAEConfig = Field(default_factory=RQVAEConfig)
    cache_dir: str | None = None  # tables under <cache_dir>/sids/<key>/; None = embed.cache_dir
    use_cache: bool = True

    @field_validator("codebook_size")
    @classmethod
    def _sizes_positive(cls, v: int | list[int]) -> int | list[int]:
        sizes = v if isinstance(v, list) else [v]
        if not sizes or any(k < 1 for k in sizes):
            raise ValueError("codebook sizes must be positive integers")
        return v

    def codebook_sizes(self) -> list[int]:
        if isinstance(self.codebook_size, int):
            return [self.codebook_size] * self.levels
        if len(self.codebook_size) != self.levels:
            raise ValueError(f"tokenizer.codebook_size lists {len(self.codebook_size)} sizes for "
                             f"tokenizer.levels={self.levels}")
        return list(self.codebook_size)
