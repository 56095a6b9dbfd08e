"""RQ-VAE (TIGER): an MLP autoencoder whose latent is quantised by ``L`` residual codebooks.

Training minimises reconstruction error plus, per level, the codebook loss
``||sg(r_l) - e_l||^2`` and the commitment loss ``beta ||r_l - sg(e_l)||^2`` (beta = 0.25), with
the straight-through estimator carrying decoder gradients past the quantiser. Two measures keep
codebooks from collapsing onto a few codes: codebooks start from k-means of the initial latents
(of all items: the catalogue fits in one pass), and every ``reseed_dead_every`` epochs codes
that no item chose since the last check are re-seeded to residuals of randomly chosen items at
that level. Per-level usage and the loss curves are returned in the table's ``meta``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pitrec.data.interactions import Interactions
from pitrec.registry import TOKENIZERS
from pitrec.tokenizers.base import Tokenizer, check_embeddings
from pitrec.tokenizers.kmeans import kmeans_fit
from pitrec.tokenizers.sid_table import SidTable
from pitrec.utils.runtime import deterministic_algorithms, resolve_device


def mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, input_dim: int, hidden: list[int], latent_dim: int, codebook_sizes: list[int],
                 commitment: float = 0.25):
        super().__init__()
        self.encoder = mlp([input_dim, *hidden, latent_dim])
        self.decoder = mlp([latent_dim, *reversed(hidden), input_dim])
        self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(k, latent_dim) * 0.01) for k in codebook_sizes])
        self.commitment = commitment

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(quantised latent, codes (B, L), codebook+commitment loss, residual entering each level)."""
        residual, quantized = z, torch.zeros_like(z)
        codes, residuals = [], []
        loss = z.new_zeros(())
        for book in self.codebooks:
            residuals.append(residual.detach())
            idx = torch.cdist(residual, book).argmin(dim=1)
            chosen = book[idx]
            loss = loss + ((residual.detach() - chosen) ** 2).sum(1).mean() \
                + self.commitment * ((residual - chosen.detach()) ** 2).sum(1).mean()
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            codes.append(idx)
        return quantized, torch.stack(codes, dim=1), loss, residuals

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        z = self.encoder(x)
        quantized, codes, quant_loss, residuals = self.quantize(z)
        z_q = z + (quantized - z).detach()  # straight-through: decoder gradient flows to the encoder
        recon = ((self.decoder(z_q) - x) ** 2).sum(1).mean()
        return {"loss": recon + quant_loss, "recon": recon, "quant": quant_loss, "codes": codes,
                "residuals": residuals}

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, seed: int) -> None:
        """k-means of the latents, level by level on the residuals."""
        residual = self.encoder(x)
        for level, book in enumerate(self.codebooks):
            centroids, labels = kmeans_fit(residual.cpu().numpy(), book.shape[0], seed + level, max_iter=50, n_init=1)
            book.data[: len(centroids)] = torch.from_numpy(centroids).to(book)
            residual = residual - book.data[torch.from_numpy(labels).to(x.device)]

    @torch.no_grad()
    def codes(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        return torch.cat([self.quantize(self.encoder(x[i:i + batch_size]))[1]
                          for i in range(0, len(x), batch_size)])


@TOKENIZERS.register("rqvae")
class RQVAETokenizer(Tokenizer):
    name = "rqvae"

    def fit(self, embeddings: np.ndarray | None, data: Interactions, seed: int) -> SidTable:
        x_np = check_embeddings(embeddings, data, self.name)
        rc = self.cfg.rqvae
        sizes = self.cfg.codebook_sizes()
        device = resolve_device(rc.device)
        start = time.perf_counter()
        x = torch.from_numpy(x_np).to(device)
        # deterministic on CPU whatever the thread count (the codebook lookup's backward is not otherwise)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), \
                deterministic_algorithms(device.type == "cpu"):
            torch.manual_seed(seed)
            model, history = self._train(x, sizes, seed)
        model.eval()
        codes = model.codes(x).cpu().numpy()
        history["final_usage_per_level"] = [int(len(np.unique(codes[:, l]))) for l in range(len(sizes))]
        meta = {"tokenizer": self.name, "seed": seed, "fit_seconds": time.perf_counter() - start,
                "device": str(device), **history}
        return SidTable(codes, sizes, meta, list(data.item_ids))

    def _train(self, x: torch.Tensor, sizes: list[int], seed: int) -> tuple[RQVAE, dict]:
        rc = self.cfg.rqvae
        model = RQVAE(x.shape[1], rc.hidden, rc.latent_dim, sizes, rc.commitment).to(x.device)
        model.init_codebooks(x, seed)
        opt = torch.optim.AdamW(model.parameters(), lr=rc.lr, weight_decay=rc.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        usage = [torch.zeros(k, dtype=torch.long, device=x.device) for k in sizes]
        history: dict[str, list] = {"recon_loss": [], "quant_loss": [], "reseeded_per_level": [0] * len(sizes)}
        bar = tqdm(range(rc.epochs), desc="rqvae", disable=not self.progress)
        for epoch in bar:
            model.train()
            order = torch.randperm(len(x), generator=gen).to(x.device)
            recon_sum = quant_sum = 0.0
            for i in range(0, len(x), rc.batch_size):
                batch = x[order[i:i + rc.batch_size]]
                out = model(batch)
                opt.zero_grad(set_to_none=True)
                out["loss"].backward()
                opt.step()
                recon_sum += float(out["recon"].detach()) * len(batch)
                quant_sum += float(out["quant"].detach()) * len(batch)
                for level, codes in enumerate(out["codes"].T):
                    usage[level] += torch.bincount(codes, minlength=sizes[level])
            history["recon_loss"].append(recon_sum / len(x))
            history["quant_loss"].append(quant_sum / len(x))
            bar.set_postfix(recon=f"{history['recon_loss'][-1]:.4f}", quant=f"{history['quant_loss'][-1]:.4f}")
            if rc.reseed_dead_every and (epoch + 1) % rc.reseed_dead_every == 0 and epoch + 1 < rc.epochs:
                self._reseed_dead(model, x, usage, history, gen)
                usage = [torch.zeros_like(u) for u in usage]
        return model, history

    @torch.no_grad()
    def _reseed_dead(self, model: RQVAE, x: torch.Tensor, usage: list[torch.Tensor], history: dict,
                     gen: torch.Generator) -> None:
        residuals = model.quantize(model.encoder(x))[3]
        for level, (book, used) in enumerate(zip(model.codebooks, usage)):
            dead = torch.nonzero(used == 0).flatten()
            if len(dead):
                pick = torch.randint(len(x), (len(dead),), generator=gen).to(x.device)
                book.data[dead] = residuals[level][pick]
                history["reseeded_per_level"][level] += int(len(dead))
