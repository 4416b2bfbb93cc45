"""What combines with what: training modes × decoders, encoders and losses.

One place derives, from the components' declared capabilities, which combinations train and
why the others cannot:

* a **decoder** trains full batch with every loss of :data:`~gnn_inn.training.losses.LOSSES`
  that does not need more than a decoder offers (``1vsall`` / ``kvsall`` score all entities,
  ``nssa`` scores per-query candidates), and neighbour-sampled when it declares
  ``scores_shared`` (:meth:`~gnn_inn.decoders.Decoder.score_shared`); every mode runs under
  ``torchrun`` (the step's queries are split over the ranks);
* an **encoder** trains neighbour-sampled when it has layer-wise ``inference`` (it encodes a
  sampled neighbourhood in training and the whole graph layer by layer for evaluation);
* a **loss** trains neighbour-sampled when it is a function of the scores of a step's shared
  candidates (:data:`SAMPLED_LOSS_REASONS` says why the others are not).

:func:`check_combination` raises a :class:`~gnn_inn.config.ConfigError` naming an impossible
combination and the reason; :func:`combination_table` prints the README's table.
"""

from __future__ import annotations

from ..config import ConfigError
from ..decoders import DECODERS, Decoder
from ..encoders import ENCODERS, Encoder
from .losses import LOSSES

#: the training modes of the contract (full batch per loss, neighbour-sampled, torchrun)
MODES = ("full 1vsall", "full kvsall", "full nssa", "sampled", "torchrun")

#: losses that only exist full batch, and why a sampled step cannot compute them
SAMPLED_LOSS_REASONS = {
    "flow_nll": "its contrastive term ranks stage 1's top K over all entities, which a "
                "sampled step does not encode",
    "elbo": "its unbiased estimator weighs negatives drawn from all of E × R × E under the "
            "variational encoders, which encode no neighbourhood to sample",
}

#: what a loss needs of the decoder / encoder: (side, capability, who has it)
LOSS_NEEDS = {
    "flow_nll": ("decoder", "density", "a density decoder ('stochastic_flow')"),
    "elbo": ("encoder", "variational", "a variational encoder ('variational' or "
                                       "'variational_gnn')"),
}


def _cls(obj) -> type:
    return obj if isinstance(obj, type) else type(obj)


def encoder_capabilities(encoder) -> dict[str, bool]:
    """The capability flags an encoder (class or instance) declares on
    :class:`~gnn_inn.encoders.Encoder`; a module that is not an ``Encoder`` declares none."""
    cls = _cls(encoder)
    if not issubclass(cls, Encoder):
        return {"layerwise_inference": False, "variational": False}
    variational = cls.variational
    return {"layerwise_inference": cls.layerwise_inference, "variational": variational}


def decoder_capabilities(decoder) -> dict[str, bool]:
    """The capability flags a decoder (class or instance) declares on
    :class:`~gnn_inn.decoders.Decoder`; a module that is not a ``Decoder`` declares none."""
    cls = _cls(decoder)
    if not issubclass(cls, Decoder):
        return {"scores_shared": False, "batch_statistics": False, "density": False}
    return {"scores_shared": cls.scores_shared, "batch_statistics": cls.batch_statistics,
            "density": cls.density}


def encoder_samples(encoder) -> bool:
    """Whether an encoder (class or instance) trains on sampled neighbourhoods: it declares
    message-passing layers with a layer-wise ``inference`` for evaluation."""
    return encoder_capabilities(encoder)["layerwise_inference"]


def check_combination(*, encoder, decoder, loss: str, sampled: bool) -> None:
    """Raise :class:`ConfigError` when ``encoder`` × ``decoder`` × ``loss`` × mode cannot train.

    Args:
        encoder, decoder: the model's modules (or classes).
        loss: ``train.loss.name``.
        sampled: ``train.sampler`` is set.
    """
    enc_name, dec_name = _name(encoder), _name(decoder)
    mode = "neighbour-sampled training (train.sampler)" if sampled else "full-batch training"
    if sampled and loss in SAMPLED_LOSS_REASONS:
        raise ConfigError(f"train.loss.name {loss!r} with train.sampler: impossible, because "
                          f"{SAMPLED_LOSS_REASONS[loss]}; train it full batch "
                          "(train.sampler: null)")
    need = LOSS_NEEDS.get(loss)
    if need is not None:
        side, flag, who = need
        module = decoder if side == "decoder" else encoder
        caps = (decoder_capabilities if side == "decoder" else encoder_capabilities)(module)
        if not caps[flag]:
            raise ConfigError(f"train.loss.name {loss!r} with {side} {_name(module)}: the loss "
                              f"needs {who}; use another loss (1vsall, kvsall, nssa)")
    if not sampled:
        return
    if not encoder_samples(encoder):
        raise ConfigError(
            f"{mode} with encoder {enc_name}: impossible, because it has no message-passing "
            "layers whose neighbourhood could be sampled (needs a message-passing encoder "
            "with layer-wise inference: rgcn, compgcn); a lookup encoder has no neighbourhood "
            "to sample (use train.loss nssa for negative sampling), or set train.sampler: "
            "null")
    if not decoder_capabilities(decoder)["scores_shared"]:
        raise ConfigError(
            f"{mode} with decoder {dec_name}: it cannot score a shared candidate set (no "
            "score_shared method / scores_shared flag), which every sampled step needs; "
            "implement score_shared or train full batch (train.sampler: null)")


def _name(obj) -> str:
    return _cls(obj).__name__


def decoder_modes(cls) -> dict[str, str]:
    """``{mode: "yes" | reason}`` for a decoder class over :data:`MODES`."""
    out = {m: "yes" for m in MODES}
    caps = decoder_capabilities(cls)
    if not caps["scores_shared"]:
        out["sampled"] = "no shared-candidate scoring"
    if caps["batch_statistics"]:
        out["torchrun"] = ("yes (batch norm uses each rank's statistics, so 2 processes "
                           "differ from 1)")
    return out


def combination_table() -> str:
    """The README's table (markdown) of what combines with what, from the capability flags."""
    lines = ["| decoder | head queries | full batch 1vsall / kvsall / nssa | neighbour-sampled "
             "(trains on) | torchrun |", "|---|---|---|---|---|"]
    for name, cls in DECODERS.items():
        modes = decoder_modes(cls)
        full = " / ".join(modes[f"full {x}"] for x in ("1vsall", "kvsall", "nssa"))
        sampled = (f"yes ({cls.shared_score})" if modes["sampled"] == "yes"
                   else modes["sampled"])
        head = {"inverse": "exact inverse", "closed_form": "closed-form inverse",
                "reciprocal": "reciprocal relation r + R"}[cls.head_queries]
        lines.append(f"| `{name}` | {head} | {full} | {sampled} | {modes['torchrun']} |")
    lines += ["", "| encoder | full batch | neighbour-sampled | torchrun |", "|---|---|---|---|"]
    for name, cls in ENCODERS.items():
        sampled = ("yes" if encoder_samples(cls)
                   else "no: no layer-wise inference over a message graph")
        lines.append(f"| `{name}` | yes | {sampled} | yes |")
    lines += ["", "| loss | full batch | neighbour-sampled | needs |", "|---|---|---|---|"]
    for name in LOSSES:
        sampled = ("yes" if name not in SAMPLED_LOSS_REASONS
                   else f"no: {SAMPLED_LOSS_REASONS[name]}")
        needs = LOSS_NEEDS[name][2] if name in LOSS_NEEDS else "any decoder"
        lines.append(f"| `{name}` | yes | {sampled} | {needs} |")
    return "\n".join(lines) + "\n"


__all__ = ["LOSS_NEEDS", "MODES", "SAMPLED_LOSS_REASONS", "check_combination",
           "combination_table", "decoder_capabilities", "decoder_modes", "encoder_capabilities",
           "encoder_samples"]
