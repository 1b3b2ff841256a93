"""A tiny randomly initialised causal LM trains three steps to the same losses with
LinearCrossEntropyLoss as with F.cross_entropy on the full logits."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch", reason="the torch face needs PyTorch")
F = torch.nn.functional

import logsumexp.torch as L  # noqa: E402

VOCAB, DIM, SEQ, BATCH = 97, 16, 12, 4


class TinyCausalLM(torch.nn.Module):
    """Embedding, a causal running-mean mixer and two Linear layers, then an LM head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, DIM)
        self.mlp1 = torch.nn.Linear(DIM, 2 * DIM)
        self.mlp2 = torch.nn.Linear(2 * DIM, DIM)
        self.head = torch.nn.Linear(DIM, VOCAB, bias=False)

    def hidden(self, tokens):
        x = self.embed(tokens)
        # Causal: position i only sees tokens 0..i (running mean over the sequence).
        steps = torch.arange(1, tokens.shape[1] + 1, dtype=x.dtype)[:, None]
        x = x + x.cumsum(dim=1) / steps
        return x + self.mlp2(F.gelu(self.mlp1(x)))


def _train(model, loss_fn, tokens):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn(model, tokens)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_three_steps_same_losses_as_torch():
    torch.manual_seed(0)
    model = TinyCausalLM().double()
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
    tokens[0, -3:] = 0
    inputs, labels = tokens[:, :-1], tokens[:, 1:].clone()
    labels[0, -3:] = -100  # padding at the end of one sequence

    def ref_loss(m, _):
        return F.cross_entropy(m.head(m.hidden(inputs)).reshape(-1, VOCAB), labels.reshape(-1))

    fused = L.LinearCrossEntropyLoss()

    def ours_loss(m, _):
        return fused(m.hidden(inputs), m.head.weight, labels)

    ref = _train(copy.deepcopy(model), ref_loss, tokens)
    ours = _train(copy.deepcopy(model), ours_loss, tokens)
    assert ref[2] < ref[0]  # it does learn
    assert ours == pytest.approx(ref, rel=1e-12)
