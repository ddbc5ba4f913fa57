"""Parameter roles: what every parameter of any model is, read from the module that owns it.

The optimiser (``kanzoo.train.optim``) groups parameters by role, never by name substrings, so
a KAN model and its MLP/CNN twin get the same treatment for the same kind of tensor: a KAN layer's
weight matrices are decayed exactly like the ``nn.Linear``/``nn.ConvNd`` weights they replace.

Roles (:data:`ROLES`):

* ``"weight"``: weight matrices/kernels (``nn.Linear``/``nn.ConvNd``/... weights, a KAN layer's
  ``base_weight`` and ``spline_weight``).
* ``"bias"``: additive biases.
* ``"gain"``: multiplicative scales (norm-layer weights, a KAN layer's ``spline_scaler``, other
  1-d parameters such as layer-scale vectors).
* ``"embedding"``: lookup tables and learned tokens/positions (``nn.Embedding``, the names a
  timm model lists in ``no_weight_decay()``).
* ``"coefficient"``: parameters that shape a learned univariate function inside a basis
  (GR-KAN's rational numerator/denominator).

How a parameter gets its role, first rule that applies:

1. A module on the parameter's path (the owner or an ancestor) declares it in its
   ``parameter_roles()`` method (``{relative name: role}``); the outermost declaration wins, so
   a model can re-declare its layers' parameters. ``KANLayer`` and ``Basis`` implement it.
2. A module on its path lists it in timm's ``no_weight_decay()`` (names relative to that module;
   timm uses it for position embeddings and class tokens): ``"embedding"``.
3. The owner's type: ``nn.Embedding``/``nn.EmbeddingBag`` -> ``"embedding"``; normalisation
   layers -> ``"gain"`` (weight) / ``"bias"``; ``nn.Linear``, ``nn.Bilinear``, convolutions
   (also transposed), ``nn.MultiheadAttention`` and recurrent layers -> ``"bias"`` for names that
   start with or end in ``bias``, else ``"weight"``.
4. Fallback for any other owner: ``"bias"`` for names that start with or end in ``bias``,
   ``"gain"`` for tensors with fewer than 2 dimensions, else ``"weight"`` (e.g. transformers'
   ``Conv1D`` weight).

A parameter shared by several modules (tied weights) is named, and classified, by the first
module that reaches it in ``model.named_parameters()`` order.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from ._protocol import is_kan_layer

__all__ = ["ROLES", "kan_parameter_names", "parameter_roles"]

ROLES = ("weight", "bias", "gain", "embedding", "coefficient")

_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
_WEIGHTED = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.MultiheadAttention,
    nn.RNNBase,
    nn.RNNCellBase,
)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def _is_bias_name(name: str) -> bool:
    return name.startswith("bias") or name.endswith("bias")


def _owner_role(owner: nn.Module, name: str, ndim: int) -> str:
    """Rules 3 and 4: the role of parameter ``name`` (of ``ndim`` dims) owned by ``owner``."""
    if isinstance(owner, _EMBEDDINGS):
        return "embedding"
    if isinstance(owner, _NORMS):
        return "bias" if _is_bias_name(name) else "gain"
    if _is_bias_name(name):
        return "bias"
    if isinstance(owner, _WEIGHTED) or ndim >= 2:
        return "weight"
    return "gain"


def _declared(module: nn.Module, hook: str) -> dict[str, str] | set[str] | None:
    fn = getattr(module, hook, None)
    if not callable(fn):
        return None
    return fn()


def _walk(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, nn.Module, list[nn.Module]]]:
    """``(name, parameter, owner, path)`` for every parameter, in ``named_parameters()`` order.

    ``path`` lists the modules from ``model`` down to the owner; shared modules and tied
    parameters are visited once, under their first name.
    """
    seen_modules: set[int] = set()
    seen_params: set[int] = set()

    def visit(prefix: str, module: nn.Module, path: list[nn.Module]):
        if id(module) in seen_modules:
            return
        seen_modules.add(id(module))
        path = [*path, module]
        for name, param in module._parameters.items():
            if param is None or id(param) in seen_params:
                continue
            seen_params.add(id(param))
            yield (f"{prefix}.{name}" if prefix else name), param, module, path
        for child_name, child in module._modules.items():
            if child is not None:
                yield from visit(f"{prefix}.{child_name}" if prefix else child_name, child, path)

    yield from visit("", model, [])


def _declarations(model: nn.Module) -> tuple[dict[int, str], dict[int, str]]:
    """Roles declared by ``parameter_roles()`` hooks and ``no_weight_decay()`` lists, by param id."""
    declared: dict[int, str] = {}
    timm_listed: dict[int, str] = {}
    for _, module in model.named_modules():  # pre-order: outer modules first, so they win
        roles = _declared(module, "parameter_roles")
        if roles is not None:
            own = dict(module.named_parameters())
            for name, role in dict(roles).items():
                if role not in ROLES:
                    raise ValueError(
                        f"{type(module).__name__}.parameter_roles() gives {name!r} the role {role!r}; "
                        f"expected one of {ROLES}"
                    )
                if name not in own:
                    raise ValueError(
                        f"{type(module).__name__}.parameter_roles() names {name!r}, which is not one of "
                        f"its parameters ({', '.join(own) or 'none'})"
                    )
                declared.setdefault(id(own[name]), role)
        listed = _declared(module, "no_weight_decay")
        if listed is not None:
            own = dict(module.named_parameters())
            for name in listed:
                if name in own:  # timm lists optional names (e.g. dist_token) that may be absent
                    timm_listed.setdefault(id(own[name]), "embedding")
    return declared, timm_listed


def parameter_roles(model: nn.Module) -> dict[str, str]:
    """The role (one of :data:`ROLES`) of every parameter of ``model``, trainable or not.

    Keys are the names of ``model.named_parameters()`` (tied parameters once). See the module
    docstring for the rules.

    Raises:
        ValueError: A ``parameter_roles()`` hook names an unknown parameter or role.
    """
    declared, timm_listed = _declarations(model)
    roles = {}
    for name, param, owner, _ in _walk(model):
        local = name.rsplit(".", 1)[-1]
        roles[name] = (
            declared.get(id(param)) or timm_listed.get(id(param)) or _owner_role(owner, local, param.ndim)
        )
    return roles


def kan_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that belong to a KAN layer (the layer's own and its basis')."""
    return {name for name, _, _, path in _walk(model) if any(is_kan_layer(m) for m in path)}
