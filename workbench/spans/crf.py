"""Linear-chain CRF: NLL via the forward algorithm, Viterbi decoding, masks for padding.

Small in-house implementation (no maintained CRF library in the venv); tested against brute-force
enumeration. Masks must be left-aligned (a prefix of ones per sequence, first position on).
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.trans = nn.Parameter(torch.zeros(num_tags, num_tags))  # trans[i, j]: i -> j
        nn.init.uniform_(self.start, -0.1, 0.1)
        nn.init.uniform_(self.end, -0.1, 0.1)
        nn.init.uniform_(self.trans, -0.1, 0.1)

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if emissions.dim() != 3 or emissions.size(-1) != self.num_tags:
            raise ValueError(f"emissions must be (B, T, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        mask = mask.bool()
        if not bool(mask[:, 0].all()):
            raise ValueError("CRF mask must be on at the first position of every sequence")
        return mask

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised score of `tags` (B, T) -> (B,)."""
        mask = self._check(emissions, mask)
        b_idx = torch.arange(emissions.size(0), device=emissions.device)
        tags = tags.clamp(min=0)
        s = self.start[tags[:, 0]] + emissions[b_idx, 0, tags[:, 0]]
        for t in range(1, emissions.size(1)):
            step = self.trans[tags[:, t - 1], tags[:, t]] + emissions[b_idx, t, tags[:, t]]
            s = s + step * mask[:, t]
        last = mask.long().sum(1) - 1
        return s + self.end[tags[b_idx, last]]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self._check(emissions, mask)
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.size(1)):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None,
            reduction: str = "mean") -> torch.Tensor:
        """Negative log-likelihood per sequence, reduced by `mean`, `sum` or `none`."""
        out = self.log_partition(emissions, mask) - self.score(emissions, tags, mask)
        return {"mean": out.mean, "sum": out.sum, "none": lambda: out}[reduction]()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """Viterbi best paths, one list per sequence with length = mask sum.

        The max-product recursion runs on tensors (B x K per step); back-pointers are moved to
        Python lists once, so backtracking costs no tensor indexing.
        """
        mask = self._check(emissions, mask)
        score = self.start + emissions[:, 0]
        history = []
        trans = self.trans.unsqueeze(0)
        for t in range(1, emissions.size(1)):
            best, idx = (score.unsqueeze(2) + trans).max(dim=1)  # (B, K): best previous tag for each tag
            history.append(idx)
            score = torch.where(mask[:, t].unsqueeze(1), best + emissions[:, t], score)
        last = (score + self.end).argmax(-1).tolist()
        lengths = mask.long().sum(1).tolist()
        hist = torch.stack(history, 1).tolist() if history else []  # (B, T-1, K)
        paths = []
        for b, n in enumerate(lengths):
            tag, path = last[b], [last[b]]
            for t in range(n - 2, -1, -1):
                tag = hist[b][t][tag]
                path.append(tag)
            paths.append(path[::-1])
        return paths
