"""MGRAL's sampling agent and its policy-gradient training.

The agent reads the unlabeled pool as a sequence (image-id order; ``sequence_length`` cuts it into
consecutive sequences read side by side): at step i a ``torch.nn.LSTM``
(parameters shared along the sequence) takes image i's embedding concatenated with the score it
gave image i-1, and a 2-layer MLP decoder turns its output into image i's score (paper Eqs. 1-2).

Training (paper Eqs. 3-4): each iteration samples a batch of ``budget`` images by Gumbel-top-k on
the scores, whose ordered sample has the Plackett-Luce likelihood, so ``log pi(batch)`` is exactly
the probability of what was sampled; the reward is the batch's estimated mAP; the moving-average
baseline is updated first (Eq. 3, ``ref <- beta ref + (1 - beta) mAP``) and the loss is
``-(mAP - ref) log pi(batch)`` (Eq. 4), so the advantage is ``beta (mAP - ref_before)``. Adam.
Selection is deterministic: the top-``budget`` scores.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn


class SamplingAgent(nn.Module):
    """LSTM over the pool with the previous decision as input; one score per image.

    ``sequence_length`` cuts the pool (in order) into consecutive sequences of that many images,
    read side by side as one LSTM batch: the recurrence is inherently step by step (each input
    holds the previous step's score), so a 2000-image pool read as one sequence costs 2000
    LSTM calls per pass, as 16 sequences of 128 only 128. ``None`` reads the pool as one sequence.
    """

    def __init__(self, embedding_dim: int = 256, hidden_size: int = 257, decoder_hidden: int = 128,
                 sequence_length: int | None = None):
        super().__init__()
        self.embedding_dim, self.sequence_length = embedding_dim, sequence_length
        self.lstm = nn.LSTM(embedding_dim + 1, hidden_size)
        self.decoder = nn.Sequential(nn.Linear(hidden_size, decoder_hidden), nn.ReLU(), nn.Linear(decoder_hidden, 1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scores [N] of the images [N, embedding_dim], read in order."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"expected embeddings [N, {self.embedding_dim}], got {list(embeddings.shape)}")
        n = embeddings.shape[0]
        length = min(self.sequence_length or n, n)
        n_seq = -(-n // length)
        # Padding goes after the last image: it never reaches a real image's step.
        padded = torch.cat([embeddings, embeddings.new_zeros(n_seq * length - n, self.embedding_dim)])
        steps = padded.view(n_seq, length, self.embedding_dim).unbind(1)  # unbind: one backward for all steps
        prev = embeddings.new_zeros(n_seq, 1)
        state = None
        scores = []
        for x in steps:
            out, state = self.lstm(torch.cat([x, prev], dim=1).unsqueeze(0), state)
            prev = self.decoder(out.squeeze(0))
            scores.append(prev)
        return torch.cat(scores, dim=1).reshape(-1)[:n]


def gumbel_top_k(scores: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of an ordered sample of ``k`` items without replacement, P(order) = Plackett-Luce(scores).

    The top-k of scores + Gumbel noise (Kool et al. 2019): one sort instead of k softmax draws.
    """
    u = torch.rand(scores.shape, generator=generator, dtype=torch.float64).clamp_(1e-12, 1.0 - 1e-12)
    gumbel = -torch.log(-torch.log(u))
    return torch.topk(scores.detach().double() + gumbel, k).indices


def plackett_luce_log_prob(scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """log P(order) under Plackett-Luce: sum_i [s_{o_i} - logsumexp(s over the items not yet drawn)].

    The k remaining sets are masks of a [k, N] matrix (an item is left at step i while its rank
    in ``order`` is at least i), so every denominator is a plain masked logsumexp: no subtraction
    of exponentials, which loses precision once the drawn items hold most of the mass.
    """
    k, n = len(order), scores.shape[0]
    rank = torch.full((n,), k, dtype=torch.long, device=scores.device)
    rank[order] = torch.arange(k, device=scores.device)
    remaining = rank[None, :] >= torch.arange(k, device=scores.device)[:, None]
    masked = scores[None, :].expand(k, n).masked_fill(~remaining, float("-inf"))
    return (scores[order] - torch.logsumexp(masked, dim=1)).sum()


class MovingBaseline:
    """ref <- beta ref + (1 - beta) reward (paper Eq. 3); the advantage is reward - ref after the update."""

    def __init__(self, beta: float = 0.5, initial: float | None = None):
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"baseline beta must lie in [0, 1], got {beta}")
        self.beta, self.ref = beta, initial

    def update(self, reward: float) -> float:
        self.ref = reward if self.ref is None else self.beta * self.ref + (1.0 - self.beta) * reward
        return reward - self.ref


def policy_gradient_step(agent: SamplingAgent, optimizer: torch.optim.Optimizer, embeddings: torch.Tensor,
                         budget: int, reward_fn: Callable[[np.ndarray], float], baseline: MovingBaseline,
                         generator: torch.Generator, temperature: float = 1.0, grad_clip: float | None = None
                         ) -> dict:
    """One REINFORCE iteration: sample a batch, reward it, step on ``-(reward - ref) log pi(batch)``."""
    scores = agent(embeddings) / temperature
    order = gumbel_top_k(scores, budget, generator)
    log_prob = plackett_luce_log_prob(scores, order)
    t0 = time.perf_counter()
    reward = float(reward_fn(order.numpy()))
    reward_s = time.perf_counter() - t0
    advantage = baseline.update(reward)
    loss = -advantage * log_prob
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(agent.parameters(), grad_clip)
    optimizer.step()
    return {"reward": reward, "ref": baseline.ref, "advantage": advantage, "log_prob": float(log_prob.detach()),
            "reward_seconds": reward_s}


def train_agent(embeddings: np.ndarray, budget: int, reward_fn: Callable[[np.ndarray], float], options: dict,
                seed: int, initial_ref: float | None = None, log: Callable[[str], None] | None = None
                ) -> tuple[SamplingAgent, list[dict]]:
    """Train a fresh agent on the unlabeled pool's embeddings [N, D]; ``reward_fn(indices) -> mAP``.

    The agent runs on the CPU: its step-by-step LSTM is bound by per-step overhead, not arithmetic.
    """
    if budget > len(embeddings):
        raise ValueError(f"budget {budget} exceeds the {len(embeddings)} unlabeled images")
    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    agent = SamplingAgent(x.shape[1], options["hidden_size"], options["decoder_hidden"], options["sequence_length"])
    opt = torch.optim.Adam(agent.parameters(), lr=options["agent_lr"])
    baseline = MovingBaseline(options["baseline_beta"], initial_ref)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for it in range(options["agent_iterations"]):
        t0 = time.perf_counter()
        h = policy_gradient_step(agent, opt, x, budget, reward_fn, baseline, gen, options["temperature"],
                                 options["grad_clip"])
        h.update(iteration=it + 1, seconds=time.perf_counter() - t0)
        history.append(h)
        if log and ((it + 1) % 10 == 0 or it == 0):
            log(f"agent iteration {it + 1}/{options['agent_iterations']}: reward {h['reward']:.4f} "
                f"ref {h['ref']:.4f} log pi {h['log_prob']:.1f}")
    return agent, history


@torch.no_grad()
def agent_scores(agent: SamplingAgent, embeddings: np.ndarray) -> np.ndarray:
    return agent.eval()(torch.as_tensor(np.asarray(embeddings, dtype=np.float32))).numpy().astype(np.float64)
