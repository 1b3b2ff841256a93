"""``logsumexp.transformers.per_token_log_probs`` against TRL's own GRPO path on tiny random models.

TRL's ``GRPOTrainer`` (before its fused head) computes ``model(...).logits[:, :-1]``, keeps the last
``logits_to_keep`` positions, divides by the temperature and applies ``selective_log_softmax`` and
``entropy_from_logits``: that is the reference, run with TRL's own functions on Llama and Qwen2 models
built from small configs (random weights, nothing downloaded). Values and the gradient of every
parameter are compared, in float32.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch")
transformers = pytest.importorskip("transformers", reason="needs Hugging Face transformers")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # TRL's import-time notices
    trl_utils = pytest.importorskip("trl.trainer.utils", reason="the reference is TRL's own functions (pip install trl)")

from logsumexp.transformers import per_token_log_probs  # noqa: E402

V = 97  # odd vocabulary


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    if kind == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))


def _trl(model, ids, mask, keep, temperature):
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep + 1).logits
    logits = logits[:, :-1, :][:, -keep:] / temperature
    return trl_utils.selective_log_softmax(logits, ids[:, -keep:]), trl_utils.entropy_from_logits(logits)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize(("keep", "temperature"), [(5, 1.0), (9, 0.7)])
def test_matches_trl_values_and_every_parameter_gradient(kind, keep, temperature):
    model = _model(kind)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding, as generation batches have
    adv = torch.randn(3, keep, generator=g)

    lp, ent = per_token_log_probs(model, ids, mask, logits_to_keep=keep, temperature=temperature, return_entropy=True)
    ((lp * adv).sum() + 0.1 * ent.sum()).backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref_lp, ref_ent = _trl(model, ids, mask, keep, temperature)
    ((ref_lp * adv).sum() + 0.1 * ref_ent.sum()).backward()

    assert lp.shape == ent.shape == (3, keep)
    torch.testing.assert_close(lp, ref_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, ref_ent, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        scale = float(p.grad.abs().max())
        torch.testing.assert_close(ours[name], p.grad, rtol=0, atol=1e-5 * max(scale, 1e-3), msg=name)


def test_default_keeps_every_token_after_the_first():
    model = _model("llama")
    ids = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(2))
    lp = per_token_log_probs(model, ids)
    ref, _ = _trl(model, ids, None, 5, 1.0)
    assert lp.shape == (2, 5)
    torch.testing.assert_close(lp, ref.detach(), rtol=1e-5, atol=1e-5)


def test_bad_logits_to_keep_raises():
    model = _model("qwen2")
    ids = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"logits_to_keep must be an int in \[1, 3\]"):
        per_token_log_probs(model, ids, logits_to_keep=4)
