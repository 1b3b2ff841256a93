r"""Train a Hugging Face causal language model without building its logits.

``patch(model)`` makes a Transformers causal LM (``LlamaForCausalLM``, ``GPT2LMHeadModel``, ...)
compute its training loss with :func:`logsumexp.torch.linear_cross_entropy` straight from the
decoder's last hidden states and the output layer's weight. The model's own loss builds the
``N × V`` logits (``V`` = 128256 for Llama 3: 1 GiB in float32 for 2048 tokens), upcasts them to
float32 and runs a cross-entropy over them; the fused loss processes the tokens in chunks, so
neither the logits nor their gradient ever exist in full.

What the patched model computes, while it is in training mode and is given ``labels``:

.. math::  \mathcal{L} = \frac{1}{n} \sum_{t:\, y_{t+1} \ne -100}
           \Big(\mathrm{LSE}(z_t) - z_{t, y_{t+1}}\Big) + c_{\mathrm{aux}}\, \mathcal{L}_{\mathrm{aux}},
           \qquad z_t = \mathrm{cap}\big(s\,(W h_t + b)\big),

the same loss as the model's own: labels shifted by one position (or the ``shift_labels`` keyword
when given), ``-100`` (or an ``ignore_index`` keyword) skipped, ``n`` the number of counted tokens
or the ``num_items_in_batch`` keyword that ``Trainer`` passes under gradient accumulation; ``s``
the architecture's logit scale (Cohere ``logit_scale``, Granite ``1 / logits_scaling``), ``cap``
Gemma's ``final_logit_softcapping`` (``cap(x) = c·tanh(x/c)``), and the router auxiliary loss of
a mixture of experts added with the model's own coefficient when it returns one (Mixtral with
``output_router_logits``). ``LSE(z) − z_y`` is evaluated as ``(m − z_y) + log1p(Σ_{i≠argmax}
exp(z_i − m))``, ``m = max z``: no overflow, and confident tokens keep their relative accuracy.
A batch whose labels are all ignored gives loss 0 and zero gradients, where the model's own
loss gives NaN.

The returned output is the model's own class with ``loss`` set and ``logits`` None. Without
labels, or in eval mode (``model.eval()``, as ``Trainer`` evaluates), the model runs exactly as
before and returns its logits, since generation and evaluation metrics need them.

How it works: the model instance (only it, not its class) gets a subclass whose ``forward``
wraps the original one, and its output layer gets a forward pre-hook. In the fused case the hook
records the hidden states the output layer receives and lets it run on zero tokens, so the
original ``forward`` runs unchanged (its arguments, caches, ``logits_to_keep`` and output class,
whatever the Transformers version) and produces empty logits; the loss is then computed from the
recorded hidden states. A patched model survives ``copy.deepcopy`` and pickling.

Supported architectures (the class names of :data:`ARCHITECTURES`): Llama, Mistral, Mixtral,
Qwen2, Qwen3, Gemma 2, Gemma 3 (text), Phi-3, OLMo 2, GPT-2, Cohere and Granite. Another
architecture raises a ValueError naming these. To add one, check that its ``forward`` computes
``logits = lm_head(hidden_states)`` followed only by element-wise changes of the logits and the
causal-LM loss, then register what those changes are::

    ARCHITECTURES["MyForCausalLM"] = Architecture(
        logit_scale=lambda model: model.config.my_scale,       # logits multiplied by it
        softcap=lambda model: model.config.my_softcap,         # c·tanh(logits / c), or None
        router_aux_loss=False,                                 # True: loss += coef · aux_loss
    )

and compare its loss and gradients with the unpatched model's, as the tests do.

Works with: ``Trainer`` (gradient accumulation through ``num_items_in_batch``), PEFT models
(LoRA on the decoder; a head made fully trainable with ``modules_to_save``; a head whose LoRA
adapters are merged or disabled; a head with live LoRA adapters is refused with a ValueError,
since its logits are not one matrix product), ``torch.compile`` of the patched model, CPU and
CUDA (CUDA tensors take the Triton kernels when ``logsumexp.triton`` imports). Under
``torch.autocast`` the hidden states and the head weight are cast to the autocast dtype first,
as the head's own matrix product would be.

Sharded training (not tested here: it needs several GPUs): the loss reads the whole head weight
(and bias) on each rank, after the model's forward has called the head on zero tokens, and its
gradient flows into that weight in backward. With FSDP (version 1, e.g. through Accelerate), keep
``lm_head`` (and an embedding tied to it) in the root unit, as wrapping by decoder-layer class
(``transformer_auto_wrap_policy``) does: the root unit gathers its parameters around the model's
forward, in which the loss is computed, and again for the backward of its outputs, the loss among
them. With FSDP2, ``lm_head`` must keep its full weight after its forward
(``fully_shard(lm_head, reshard_after_forward=False)``; Transformers' own FSDP plan marks it
``keep_full_weight``); one that reshards after forward leaves only a shard in ``lm_head.weight``.
DeepSpeed ZeRO-1 and ZeRO-2 keep whole weights and need nothing; ZeRO-3 gathers a module's weights
only around its own call and is not supported. Tensor parallelism that splits ``lm_head`` by
vocabulary needs ``logsumexp.torch.vocab_parallel_cross_entropy`` instead. ``DataParallel``
replicas would share the patch's state between threads: use DistributedDataParallel, which
calls the patched forward like any other.

Examples
--------
>>> import torch, transformers
>>> from logsumexp.transformers import patch, unpatch
>>> config = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64,
...     num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
>>> torch.manual_seed(0) and None
>>> model = transformers.LlamaForCausalLM(config).train()
>>> ids = torch.randint(0, 300, (2, 12))
>>> reference = model(input_ids=ids, labels=ids).loss
>>> out = patch(model)(input_ids=ids, labels=ids)
>>> out.logits is None, torch.allclose(out.loss, reference, rtol=1e-6)
(True, True)
>>> model.eval()(input_ids=ids).logits.shape        # eval mode: the logits, as before
torch.Size([2, 12, 300])
>>> type(unpatch(model)) is transformers.LlamaForCausalLM
True
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from typing import Any, Callable

import torch
from torch import Tensor, nn

from logsumexp.torch import linear_cross_entropy

__all__ = ["ARCHITECTURES", "Architecture", "patch", "unpatch", "is_patched", "per_token_log_probs"]

_STATE = "_logsumexp_patch"  # instance attribute holding the patch's options and hook


def _none(model: nn.Module) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What an architecture's ``forward`` does to ``lm_head(hidden_states)`` before its loss.

    ``logit_scale(model)``: the factor the logits are multiplied by (None: 1).
    ``softcap(model)``: ``c`` of ``c·tanh(logits / c)``, applied after the scale (None: no cap).
    ``router_aux_loss``: the model adds ``model.router_aux_loss_coef · output.aux_loss`` to the
    loss when its output carries an ``aux_loss`` (mixtures of experts).
    """

    logit_scale: Callable[[nn.Module], float | None] = _none
    softcap: Callable[[nn.Module], float | None] = _none
    router_aux_loss: bool = False


def _gemma_softcap(model: nn.Module) -> float | None:
    return getattr(model.config, "final_logit_softcapping", None)


def _cohere_scale(model: nn.Module) -> float | None:
    # CohereForCausalLM multiplies by its own attribute, read from config.logit_scale at init.
    return getattr(model, "logit_scale", None)


def _granite_scale(model: nn.Module) -> float:
    # GraniteForCausalLM divides the logits by config.logits_scaling.
    return 1.0 / model.config.logits_scaling


#: Class name → what its forward does to the logits. Plain decoders need no entry fields.
ARCHITECTURES: dict[str, Architecture] = {
    "LlamaForCausalLM": Architecture(),
    "MistralForCausalLM": Architecture(),
    "MixtralForCausalLM": Architecture(router_aux_loss=True),
    "Qwen2ForCausalLM": Architecture(),
    "Qwen3ForCausalLM": Architecture(),
    "Gemma2ForCausalLM": Architecture(softcap=_gemma_softcap),
    "Gemma3ForCausalLM": Architecture(softcap=_gemma_softcap),
    "Phi3ForCausalLM": Architecture(),
    "Olmo2ForCausalLM": Architecture(),
    "GPT2LMHeadModel": Architecture(),
    "CohereForCausalLM": Architecture(logit_scale=_cohere_scale),
    "GraniteForCausalLM": Architecture(logit_scale=_granite_scale),
}


@dataclasses.dataclass
class _Options:
    z_loss: float
    label_smoothing: float


class _HeadCapture:
    """Forward pre-hook on the output layer: while armed, record its input and hand it zero tokens.

    The output layer then returns logits of shape ``(batch, 0, V)``: the model's forward runs to
    its end at no cost, and the recorded hidden states go to the fused loss. A class (not a
    closure) so that a patched model can be deep-copied and pickled.
    """

    def __init__(self) -> None:
        self.armed = False
        self.hidden: Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not self.armed or not args or not isinstance(args[0], Tensor) or args[0].ndim < 2:
            return None
        hidden = args[0]
        self.hidden = hidden
        return (hidden[..., :0, :],) + tuple(args[1:])


@dataclasses.dataclass
class _PatchState:
    architecture: Architecture
    options: _Options
    capture: _HeadCapture
    head: nn.Module | None = None
    handle: Any = None


# --------------------------------------------------------------------------- the patched class


class _PatchedClasses:
    """Namespace of the per-class subclasses, resolvable by name so that pickles load anywhere.

    A patched ``LlamaForCausalLM`` has the qualified name ``_patched.LlamaForCausalLM`` in this
    module; unpickling it in a fresh process rebuilds the subclass of the Transformers class of
    that name.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, type] = {}

    def of(self, cls: type) -> type:
        patched = self._by_name.get(cls.__name__)
        if patched is None or patched.__bases__[0] is not cls:
            patched = _make_patched_class(cls)
            self._by_name[cls.__name__] = patched
        return patched

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        cls = getattr(importlib.import_module("transformers"), name, None)
        if not isinstance(cls, type):
            raise AttributeError(f"no Transformers class {name!r} to rebuild a patched model from")
        return self.of(cls)


_patched = _PatchedClasses()


def _make_patched_class(cls: type) -> type:
    original = cls.forward

    # functools.wraps keeps the original signature visible to inspect.signature: Trainer reads it
    # to keep dataset columns and to decide whether to pass num_items_in_batch.
    @functools.wraps(original)
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return _forward(self, original, args, kwargs)

    namespace = {
        "forward": forward,
        "__module__": __name__,
        "__qualname__": f"_patched.{cls.__name__}",
        "_logsumexp_original_class": cls,
    }
    # Same __name__: save_pretrained writes config.architectures from it.
    return type(cls.__name__, (cls,), namespace)


def _forward(model: nn.Module, original: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    if args:
        kwargs = _as_keywords(original, args, kwargs)
    labels = kwargs.get("labels")
    state: _PatchState | None = model.__dict__.get(_STATE)
    if labels is None or not model.training or state is None:
        return original(model, **kwargs)
    kwargs = dict(kwargs)
    del kwargs["labels"]
    want_tuple = kwargs.pop("return_dict", None)
    if want_tuple is None:
        want_tuple = getattr(model.config, "return_dict", True) is False
    else:
        want_tuple = not want_tuple
    weight, bias = _hook_head(model, state)
    capture = state.capture
    capture.armed, capture.hidden = True, None
    try:
        output = original(model, return_dict=True, **kwargs)
        hidden = capture.hidden
    finally:
        capture.armed, capture.hidden = False, None
    if hidden is None:
        raise RuntimeError(f"{type(model).__name__}.forward did not call its output layer "
                           f"{type(state.head).__name__}: logsumexp.transformers cannot take its loss")
    loss = _loss(model, state, hidden, weight, bias, labels, kwargs)
    aux = getattr(output, "aux_loss", None)
    if state.architecture.router_aux_loss and aux is not None:
        loss = loss + model.router_aux_loss_coef * aux.to(loss.device)
    fields = {f.name: getattr(output, f.name) for f in dataclasses.fields(output)}
    fields.update(loss=loss, logits=None)
    if want_tuple:
        # The unpatched model's tuple holds its non-None fields in order, the logits second; a
        # None keeps that place, so that `loss, logits = out[:2]` does not pick up the cache.
        return tuple(v for k, v in fields.items() if v is not None or k == "logits")
    return type(output)(**fields)


@functools.lru_cache(maxsize=None)
def _positional_names(original: Callable[..., Any]) -> tuple[str, ...]:
    params = list(inspect.signature(original).parameters.values())[1:]  # without self
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds)


def _as_keywords(original: Callable[..., Any], args: tuple, kwargs: dict) -> dict:
    names = _positional_names(original)
    if len(args) > len(names):
        raise TypeError(f"forward takes at most {len(names)} positional arguments, got {len(args)}")
    clash = [n for n in names[: len(args)] if n in kwargs]
    if clash:
        raise TypeError(f"forward got multiple values for argument {clash[0]!r}")
    return {**dict(zip(names, args)), **kwargs}


# --------------------------------------------------------------------------- the head and the loss


def _hook_head(model: nn.Module, state: _PatchState) -> tuple[Tensor, Tensor | None]:
    """Weight and bias the output layer applies; keep the capture hook on the current layer.

    The layer is looked up on every call: PEFT may have wrapped it after ``patch``.
    """
    head = model.get_output_embeddings()
    if head is None:
        raise RuntimeError(f"{type(model).__name__} has no output layer (get_output_embeddings() is None)")
    if head is not state.head:
        if state.handle is not None:
            state.handle.remove()
        state.handle = head.register_forward_pre_hook(state.capture)
        state.head = head
    return _effective_linear(head)


def _effective_linear(head: nn.Module) -> tuple[Tensor, Tensor | None]:
    # PEFT's modules_to_save wrapper runs a trainable copy of the layer for the active adapter.
    if hasattr(head, "modules_to_save") and hasattr(head, "original_module"):
        active = list(head.active_adapters)
        if head.disable_adapters or not active or any(a not in head.modules_to_save for a in active):
            return _effective_linear(head.original_module)
        return _effective_linear(head.modules_to_save[active[0]])
    # A PEFT tuner layer (LoRA, ...) around the head.
    if hasattr(head, "base_layer") and hasattr(head, "active_adapters"):
        live = _live_adapters(head)
        if live:
            raise ValueError(
                f"the output layer carries live PEFT adapters {live} ({type(head).__name__}); "
                "logsumexp.transformers cannot fuse a LoRA'd head: leave lm_head out of "
                "target_modules (modules_to_save=['lm_head'] trains it fully), or merge the adapters"
            )
        return _effective_linear(head.base_layer)
    if isinstance(head, nn.Linear) and head.weight.is_floating_point():
        return head.weight, head.bias
    raise TypeError(f"the output layer must be a floating-point torch.nn.Linear (possibly wrapped by "
                    f"PEFT), got {type(head).__name__}")


def _live_adapters(layer: nn.Module) -> list[str]:
    """Active adapters of a PEFT tuner layer that change its output (present, enabled, not merged)."""
    if layer.disable_adapters:
        return []
    merged = set(getattr(layer, "merged_adapters", ()))
    names = getattr(layer, "adapter_layer_names", ())
    present = {key for n in names for key in getattr(layer, n, {}).keys()}
    return [a for a in layer.active_adapters if a in present and a not in merged]


def _loss(model: nn.Module, state: _PatchState, hidden: Tensor, weight: Tensor, bias: Tensor | None,
          labels: Tensor, kwargs: dict) -> Tensor:
    ignore_index = kwargs.get("ignore_index", -100)
    target = kwargs.get("shift_labels")
    if target is None:
        # Transformers' shift: position t predicts label t+1; the last position predicts nothing.
        target = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    # With the model split over devices (device_map), the hidden states may still be on the
    # previous layer's device: the head's own device hooks run after the capture.
    hidden = hidden.to(weight.device)
    target = target.to(weight.device)
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(f"labels must cover the positions whose logits are kept: hidden states "
                         f"{tuple(hidden.shape[:-1])}, shifted labels {tuple(target.shape)} "
                         "(logits_to_keep must be 0 when training with labels)")
    hidden, weight, bias = _autocast(hidden, weight, bias)
    scale = state.architecture.logit_scale(model)
    if scale is not None and scale != 1:
        # s·(W h + b) = W (s h) + s b: the scale goes on the N × D side, not on the logits.
        hidden = hidden * scale
        bias = None if bias is None else bias * scale
    num_items = kwargs.get("num_items_in_batch")
    if isinstance(num_items, Tensor):
        num_items = num_items.to(hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):
        return linear_cross_entropy(
            hidden, weight, target, bias, ignore_index=ignore_index, reduction="mean",
            label_smoothing=state.options.label_smoothing, z_loss=state.options.z_loss,
            softcap=state.architecture.softcap(model), num_items=num_items,
        )


def _autocast(hidden: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Cast to the autocast dtype when autocast is on, as ``lm_head``'s matrix product would be."""
    device = hidden.device.type
    if not torch.is_autocast_enabled(device):
        return hidden, weight, bias
    dtype = torch.get_autocast_dtype(device)
    return hidden.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


# --------------------------------------------------------------------------- public API


def _causal_lm(model: object) -> nn.Module:
    """The Transformers model inside a ``torch.compile`` or PEFT wrapper (or the model itself)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a Transformers causal LM), got {type(model).__name__}")
    compiled = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
    if isinstance(compiled, nn.Module):
        return _causal_lm(compiled)
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base) and type(model).__name__.startswith("Peft"):
        return get_base()
    return model


def _original_class(model: nn.Module) -> type:
    return type(model).__dict__.get("_logsumexp_original_class", type(model))


def is_patched(model: nn.Module) -> bool:
    """Whether ``patch`` is in effect on ``model`` (or on the model inside a PEFT wrapper)."""
    return _STATE in _causal_lm(model).__dict__


def patch(model: nn.Module, *, z_loss: float = 0.0, label_smoothing: float = 0.0) -> nn.Module:
    """Make ``model`` compute its training loss without its logits; returns ``model`` (patched in place).

    Parameters
    ----------
    model
        A Transformers causal LM of a supported architecture (see :data:`ARCHITECTURES`), or a
        PEFT model or a ``torch.compile`` wrapper around one. Only this instance changes; other
        models of its class do not.
    z_loss
        Coefficient of the auxiliary ``z_loss · LSE(z)²`` per counted token (PaLM); 0 gives
        exactly the model's own loss.
    label_smoothing
        Label smoothing ε of the cross-entropy (0: none, the model's own loss).

    Calling it again updates the options. Raises ValueError for an architecture it does not
    know (the message lists the known ones) or a bad option.
    """
    lm = _causal_lm(model)
    cls = _original_class(lm)
    architecture = ARCHITECTURES.get(cls.__name__)
    if architecture is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"logsumexp.transformers.patch does not know the architecture {cls.__name__}; "
                         f"it supports {known} (see the module documentation to add one)")
    for name, value in (("z_loss", z_loss), ("label_smoothing", label_smoothing)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf"):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if label_smoothing >= 1:
        raise ValueError(f"label_smoothing must be < 1, got {label_smoothing!r}")
    options = _Options(z_loss=float(z_loss), label_smoothing=float(label_smoothing))
    state: _PatchState | None = lm.__dict__.get(_STATE)
    if state is None:
        # Set through __dict__: nn.Module.__setattr__ would try to register dataclass fields.
        lm.__dict__[_STATE] = _PatchState(architecture, options, _HeadCapture())
        lm.__class__ = _patched.of(cls)
    else:
        state.architecture, state.options = architecture, options
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Undo :func:`patch`: the model computes its logits and its own loss again. Returns ``model``.

    A model that is not patched is returned unchanged.
    """
    lm = _causal_lm(model)
    state: _PatchState | None = lm.__dict__.pop(_STATE, None)
    if state is not None and state.handle is not None:
        state.handle.remove()
    lm.__class__ = _original_class(lm)
    return model


# --------------------------------------------------------------------------- RL: per-token log-probabilities


def per_token_log_probs(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    logits_to_keep: int | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Per-token ``log p(input_ids[t] | input_ids[:t])`` (and entropy) of a causal LM, without its logits.

    What TRL's ``GRPOTrainer._get_per_token_logps_and_entropies`` computes from the full logits
    (``model(...).logits[:, :-1]``, the last ``logits_to_keep`` positions, divided by
    ``temperature``, then ``selective_log_softmax`` and ``entropy_from_logits``), computed instead
    from the decoder's last hidden states and the output layer's weight by
    :func:`logsumexp.torch.linear_log_probs`: the ``[B, K, V]`` logits are never built, in the
    forward pass or the backward pass. Gradients flow to every parameter of the model.

    Returns ``(B, K)`` float32 log-probabilities of the tokens ``input_ids[:, -K:]`` (``K =
    logits_to_keep``, default ``L − 1``: every token after the first) and, with
    ``return_entropy``, the ``(B, K)`` entropies of the same predictive distributions.
    Positions the attention mask hides are computed like the others (mask them yourself, as TRL
    does). The architecture's logit scale (Cohere, Granite) is applied; a soft-capped head
    (Gemma 2/3) raises ValueError.

    Examples
    --------
    >>> import torch, transformers
    >>> from logsumexp.transformers import per_token_log_probs
    >>> cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
    ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    >>> model = transformers.LlamaForCausalLM(cfg)
    >>> ids = torch.randint(0, 50, (2, 7))
    >>> lp = per_token_log_probs(model, ids, logits_to_keep=4)
    >>> ref = torch.log_softmax(model(ids).logits[:, -5:-1].float(), -1).gather(-1, ids[:, -4:, None])[..., 0]
    >>> lp.shape, torch.allclose(lp, ref, atol=1e-5)
    (torch.Size([2, 4]), True)
    """
    from logsumexp.torch import linear_log_probs

    lm = _causal_lm(model)
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
        raise ValueError(f"input_ids must be a (batch, length) tensor, got {getattr(input_ids, 'shape', input_ids)!r}")
    length = input_ids.shape[1]
    keep = length - 1 if logits_to_keep is None else logits_to_keep
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= length - 1:
        raise ValueError(f"logits_to_keep must be an int in [1, {length - 1}] (input length − 1), got {logits_to_keep!r}")
    architecture = ARCHITECTURES.get(_original_class(lm).__name__)
    if architecture is not None and architecture.softcap(lm) is not None:
        raise ValueError(f"{_original_class(lm).__name__} soft-caps its logits; per_token_log_probs "
                         "does not fuse a soft-capped head")
    body = lm.get_decoder() if hasattr(lm, "get_decoder") else lm.model
    out = body(input_ids=input_ids, attention_mask=attention_mask)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    # Position t predicts token t + 1: the K positions before the last predict the last K tokens.
    hidden = hidden[:, length - 1 - keep : length - 1]
    weight, bias = _effective_linear(lm.get_output_embeddings())
    hidden = hidden.to(weight.device)
    hidden, weight, bias = _autocast(hidden, weight, bias)
    scale = None if architecture is None else architecture.logit_scale(lm)
    if scale is not None and scale != 1:
        hidden = hidden * scale  # s·(W h + b) = W (s h) + s b: the scale stays on the N × D side
        bias = None if bias is None else bias * scale
    with torch.autocast(hidden.device.type, enabled=False):
        return linear_log_probs(hidden, weight, input_ids[:, -keep:].to(weight.device), bias=bias,
                                temperature=temperature, return_entropy=return_entropy)
