"""Rank-independent PartialFC state and re-sharding to another world size.

A PartialFC ``state_dict()`` holds one rank's shard: the head's per-class tensors (``head.weight``
rows of its classes, ``head.bias``), the replicated head state (e.g. ``head.iteration``) and
``_extra_state`` (sharding, sampling generator, the full-size row optimizer state).

* :func:`gather_full_state` joins the state dicts of all ranks (in any order) into one
  rank-independent "full" state: per-class tensors of all C classes, generator states kept
  for a reload at the same world size.
* :func:`shard_full_state` cuts a full state for rank ``r`` of a new world size; at another
  world size the sampling generators restart from ``(seed, rank, step)``.
* :func:`reshard_state_dicts` does both: 8 per-rank files -> 2 per-rank files.
* :func:`full_state_to_head` turns a full state into one ordinary head of all C classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from marginface.heads.base import MarginHead
from marginface.heads.registry import create_head
from marginface.parallel.sharding import shard_range

#: format tag of PartialFC's extra state (``_extra_state`` key of its ``state_dict()``)
STATE_FORMAT = "marginface.parallel.PartialFC/1"
EXTRA = "_extra_state"
HEAD = "head."


def _extra(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    extra = sd.get(prefix + EXTRA)
    if not isinstance(extra, dict) or extra.get("format") != STATE_FORMAT:
        raise ValueError(
            f"not a PartialFC state dict: no {prefix + EXTRA!r} of format "
            f"{STATE_FORMAT!r} (pass prefix= for a nested module)"
        )
    return extra


def gather_full_state(state_dicts: Sequence[Mapping[str, Any]], prefix: str = "") -> dict[str, Any]:
    """One full, rank-independent state from the per-rank state dicts of one run.

    Args:
        state_dicts: ``pfc.state_dict()`` of every rank (any order; all ranks present).
        prefix: the key prefix of the PartialFC inside a larger state dict, e.g. ``"pfc."``.

    Returns:
        a state dict of the same keys (without the prefix) for ``world_size`` 1: per-class
        tensors of all classes, replicated entries from rank 0.
    """
    if not state_dicts:
        raise ValueError("no state dicts given")
    extras = [_extra(sd, prefix) for sd in state_dicts]
    world = extras[0]["world_size"]
    ranks = sorted(e["rank"] for e in extras)
    if any(e["world_size"] != world for e in extras) or ranks != list(range(world)):
        raise ValueError(
            f"need the state dicts of ranks 0..{world - 1} of one run, each once; "
            f"got ranks {ranks} of world sizes "
            f"{sorted({e['world_size'] for e in extras})}"
        )
    order = sorted(range(len(extras)), key=lambda i: extras[i]["rank"])
    sds = [state_dicts[i] for i in order]
    extras = [extras[i] for i in order]
    first = extras[0]
    for e in extras[1:]:
        for key in ("num_classes", "embedding_size", "head_name", "class_keys"):
            if e[key] != first[key]:
                raise ValueError(f"the state dicts disagree on {key}: {first[key]} vs {e[key]}")
    class_keys = first["class_keys"]
    full: dict[str, Any] = {}
    for key in sds[0]:
        if not key.startswith(prefix) or key == prefix + EXTRA:
            continue
        name = key[len(prefix) :]
        if name.startswith(HEAD) and name[len(HEAD) :] in class_keys:
            full[name] = torch.cat([sd[key] for sd in sds])
        else:
            full[name] = sds[0][key]
    row_state: dict[str, dict[str, Tensor]] = {}
    num_classes = first["num_classes"]
    for cls_key, k in class_keys.items():
        names = sorted({n for e in extras for n in e["row_state"].get(cls_key, {})})
        row_state[cls_key] = {}
        for n in names:
            parts = []
            for e in extras:
                t = e["row_state"].get(cls_key, {}).get(n)
                rows = (e["class_range"][1] - e["class_range"][0]) * k
                if t is None:  # this rank never stepped: its state is still zero
                    ref = next(
                        x["row_state"][cls_key][n]
                        for x in extras
                        if n in x["row_state"].get(cls_key, {})
                    )
                    t = ref.new_zeros((rows, *ref.shape[1:]))
                parts.append(t)
            row_state[cls_key][n] = torch.cat(parts)
    full[EXTRA] = {
        **first,
        "rank": 0,
        "world_size": 1,
        "class_range": (0, num_classes),
        "generator_state": extras[0]["generator_state"] if world == 1 else None,
        "source_world_size": world,
        "source_generator_states": [e["generator_state"] for e in extras],
        "row_state": row_state,
    }
    return full


def shard_full_state(full: Mapping[str, Any], world_size: int, rank: int) -> dict[str, Any]:
    """Rank ``rank``'s state dict, for ``world_size`` ranks, cut from a full state.

    Generator states are restored when the world size is the one the full state came from;
    otherwise each rank's sampling generator is re-seeded from (seed, rank, step).
    """
    extra = _extra(full, "")
    if extra["world_size"] != 1 or tuple(extra["class_range"]) != (0, extra["num_classes"]):
        raise ValueError(
            "shard_full_state needs a full state (gather_full_state / "
            "PartialFC.full_state_dict), got one rank's shard"
        )
    class_keys = extra["class_keys"]
    s0, s1 = shard_range(extra["num_classes"], world_size, rank)
    out: dict[str, Any] = {}
    for name, value in full.items():
        if name == EXTRA:
            continue
        if name.startswith(HEAD) and name[len(HEAD) :] in class_keys:
            k = class_keys[name[len(HEAD) :]]
            out[name] = value[s0 * k : s1 * k].clone()
        else:
            out[name] = value
    gens = extra.get("source_generator_states") or [extra.get("generator_state")]
    same_world = extra.get("source_world_size", 1) == world_size
    out[EXTRA] = {
        **{
            k: v
            for k, v in extra.items()
            if k not in ("source_world_size", "source_generator_states")
        },
        "rank": rank,
        "world_size": world_size,
        "class_range": (s0, s1),
        "generator_state": gens[rank] if same_world else None,
        "row_state": {
            key: {
                n: t[s0 * class_keys[key] : s1 * class_keys[key]].clone() for n, t in states.items()
            }
            for key, states in extra["row_state"].items()
        },
    }
    return out


def reshard_state_dicts(
    state_dicts: Sequence[Mapping[str, Any]], world_size: int, prefix: str = ""
) -> list[dict[str, Any]]:
    """Per-rank state dicts of one run -> per-rank state dicts for ``world_size`` ranks."""
    full = gather_full_state(state_dicts, prefix)
    return [shard_full_state(full, world_size, r) for r in range(world_size)]


def full_state_to_head(full: Mapping[str, Any]) -> MarginHead:
    """An ordinary head of all C classes (``head(x, y)``, ``head.loss``) from a full state."""
    extra = _extra(full, "")
    head = create_head(
        extra["head_name"], extra["embedding_size"], extra["num_classes"], **extra["head_hparams"]
    )
    head.load_state_dict({k[len(HEAD) :]: v for k, v in full.items() if k.startswith(HEAD)})
    return head
