"""The architecture space of a NAS campaign, canonical architectures and their hash.

An architecture is a stem width and a chain of layers, each an operation and, for the
convolutions, an output width::

    {"stem": 8, "layers": [["conv5", 16], ["maxpool", null], ["sepconv3", 32]]}

``skip`` is the identity, so the canonical form drops it, and pooling keeps its input's
channels, so its width is null: two samples that build the same network get the same
canonical form and the same ``arch_hash``, which is how duplicates are found.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InvalidInput
from pipeline.hpo.space import ParamSpec, SearchSpace

__all__ = [
    "CONV_OPS",
    "OPS",
    "POOL_OPS",
    "NasSpace",
    "arch_from_params",
    "arch_hash",
    "canonical_arch",
    "parse_nas_space",
    "sample_arch",
]

CONV_OPS = {"conv3": 3, "conv5": 5, "conv7": 7, "sepconv3": 3, "sepconv5": 5, "sepconv7": 7}
POOL_OPS = ("maxpool", "avgpool")
OPS = (*CONV_OPS, *POOL_OPS, "skip")
MAX_LAYERS = 16
MAX_WIDTH = 1024


@dataclass(frozen=True)
class NasSpace:
    """Layer counts, operations and channel widths to search over."""

    min_layers: int
    max_layers: int
    ops: tuple[str, ...]
    widths: tuple[int, ...]
    stem_widths: tuple[int, ...]

    def search_space(self) -> SearchSpace:
        """Return the space as HPO parameters (``n_layers``, ``stem``, ``op_i``, ``width_i``)."""
        params = [
            ParamSpec("n_layers", "int", low=self.min_layers, high=self.max_layers),
            ParamSpec("stem", "categorical", choices=self.stem_widths),
        ]
        for i in range(self.max_layers):
            params += [ParamSpec(f"op_{i}", "categorical", choices=self.ops),
                       ParamSpec(f"width_{i}", "categorical", choices=self.widths)]
        return SearchSpace(tuple(sorted(params, key=lambda p: p.name)))

    def to_dict(self) -> dict[str, Any]:
        """Return the space as JSON."""
        return {"min_layers": self.min_layers, "max_layers": self.max_layers, "ops": list(self.ops),
                "widths": list(self.widths), "stem_widths": list(self.stem_widths)}


def _widths(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"NAS space: {name!r} must be a non-empty list of channel widths, got {value!r}")
    for width in value:
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
            raise InvalidInput(f"NAS space: {name!r} holds {width!r}; widths are integers in [1, {MAX_WIDTH}]")
    return tuple(sorted(set(value)))


def parse_nas_space(raw: Any) -> NasSpace:
    """Parse and check a NAS space.

    Raises:
        InvalidInput: unknown keys or operations, min_layers > max_layers, no operation
            that has weights, empty or out-of-range widths.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"the NAS space must be an object, got {raw!r}")
    known = {"min_layers", "max_layers", "ops", "widths", "stem_widths"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"NAS space: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    low, high = raw.get("min_layers", 1), raw.get("max_layers", 4)
    for name, value in (("min_layers", low), ("max_layers", high)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LAYERS:
            raise InvalidInput(f"NAS space: {name} must be an integer in [1, {MAX_LAYERS}], got {value!r}")
    if low > high:
        raise InvalidInput(f"NAS space: min_layers ({low}) is greater than max_layers ({high})")
    ops = raw.get("ops", list(OPS))
    if not isinstance(ops, list) or not ops:
        raise InvalidInput(f"NAS space: 'ops' must be a non-empty list of {', '.join(OPS)}")
    bad = sorted({str(op) for op in ops} - set(OPS))
    if bad:
        raise InvalidInput(f"NAS space: unknown operation(s) {', '.join(bad)}; valid: {', '.join(OPS)}")
    if not set(ops) & set(CONV_OPS):
        raise InvalidInput("NAS space: 'ops' needs at least one convolution, or no candidate can learn")
    widths = _widths("widths", raw.get("widths", [8, 16, 32]))
    stems = _widths("stem_widths", raw.get("stem_widths", [widths[0]]))
    return NasSpace(low, high, tuple(dict.fromkeys(ops)), widths, stems)


def canonical_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """Return the canonical form of an architecture (see the module doc); raises InvalidInput."""
    stem, layers = arch.get("stem"), arch.get("layers")
    if isinstance(stem, bool) or not isinstance(stem, int) or not 1 <= stem <= MAX_WIDTH:
        raise InvalidInput(f"architecture: 'stem' must be a width in [1, {MAX_WIDTH}], got {stem!r}")
    if not isinstance(layers, list):
        raise InvalidInput(f"architecture: 'layers' must be a list, got {layers!r}")
    canonical = []
    for layer in layers:
        if not isinstance(layer, (list, tuple)) or len(layer) != 2 or layer[0] not in OPS:
            raise InvalidInput(f"architecture: a layer is [operation, width], got {layer!r}")
        op, width = layer
        if op == "skip":
            continue
        if op in POOL_OPS:
            canonical.append([op, None])
            continue
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
            raise InvalidInput(f"architecture: {op} needs a width in [1, {MAX_WIDTH}], got {width!r}")
        canonical.append([op, width])
    return {"stem": stem, "layers": canonical}


def arch_hash(arch: Mapping[str, Any]) -> str:
    """Return the hash of an architecture's canonical form (equal networks, equal hashes)."""
    text = json.dumps(canonical_arch(arch), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def arch_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Turn sampled ``n_layers``/``stem``/``op_i``/``width_i`` values into a canonical architecture."""
    layers = [[params[f"op_{i}"], params[f"width_{i}"]] for i in range(int(params["n_layers"]))]
    return canonical_arch({"stem": params["stem"], "layers": layers})


def sample_arch(space: NasSpace, rng: random.Random) -> dict[str, Any]:
    """Draw one architecture uniformly from ``space`` (canonical form)."""
    params: dict[str, Any] = {"n_layers": rng.randint(space.min_layers, space.max_layers),
                              "stem": rng.choice(space.stem_widths)}
    for i in range(space.max_layers):
        params[f"op_{i}"], params[f"width_{i}"] = rng.choice(space.ops), rng.choice(space.widths)
    return arch_from_params(params)
