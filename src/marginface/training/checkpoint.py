"""Training checkpoints (``OUTPUT/checkpoint.pt``): everything needed to continue exactly.

Keys: ``format``, ``backbone`` and ``head`` (state dicts, the head's state buffers included),
``optimizer``, ``scheduler``, ``scaler``, ``rng`` (torch CPU and CUDA, numpy, python),
``position`` (``epoch``, ``batch``: micro-batches done in that epoch, ``step``: optimizer steps
done in all, ``seed``: the data-order seed), ``best`` (best validation score so far),
``config`` (the TrainConfig as a dict), ``model_info`` (as in ``model.json``), ``world_size``.
Only tensors and plain Python values: it loads with ``torch.load(weights_only=True)``.

Integrity: ``checksum`` holds the sha256 of everything else in the file (every tensor's dtype,
shape and bytes, every plain value's repr, in order; :mod:`marginface.checksum`), recorded when
saving and checked when loading (:func:`load_checkpoint`), so a flipped bit anywhere in a
tensor's data is a ValueError naming the file rather than silently changed weights. A
checkpoint written before checksums existed (no ``checksum`` key) still loads, unchecked.

Resuming (:func:`check_resumable`) also refuses a checkpoint whose weights or optimizer state
hold NaN or inf (a run would continue from a broken state), and one whose backbone or head
does not fit the run being built (another architecture, or data that gained or lost an
identity), naming the cause.

The run's side: :func:`run_payload` is what a run saves, :func:`write_run` writes it with the
model files, :func:`resume_into` loads it into a run being built and :func:`resume_run` also
finds where the run goes on (:func:`reshard_position` when the number of processes changed)
and cuts its log back to it; :class:`Boundary` is the state at the last step boundary
(:func:`snapshot`, :func:`restore`) that an interrupted step goes back to and that a run
failing with an error saves (:func:`save_after_error`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from marginface.checksum import DIGEST, leaves, payload_digest, verify_checksum
from marginface.files import atomic_torch_save, open_regular
from marginface.training.config import RESUME_FREE_KEYS, TrainConfig
from marginface.training.logger import truncate_log

FORMAT = 1
__all__ = ["DIGEST", "check_resumable", "load_checkpoint", "payload_digest", "save_checkpoint",
           "verify_checksum"]  # fmt: skip


def capture_rng() -> dict[str, Any]:
    """The state of every random number generator the training uses, as tensors and lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put the generators back in the state :func:`capture_rng` saw."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format version and its checksum) atomically to ``path``."""
    blob = {"format": FORMAT, **payload}
    blob["checksum"] = {"digest": DIGEST, "value": payload_digest(blob)}
    return atomic_torch_save(blob, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint; ValueError naming the file when it is not one or its
    checksum does not match (:func:`verify_checksum`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    with open_regular(path, "checkpoint") as f:
        try:
            blob = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise ValueError(f"{path}: cannot read the checkpoint ({exc})") from exc
    needed = ("backbone", "head", "optimizer", "scheduler", "rng", "position", "config")
    missing = [k for k in needed if not isinstance(blob, dict) or k not in blob]
    if missing:
        raise ValueError(f"{path}: not a marginface training checkpoint (lacks {missing})")
    if blob.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {blob.get('format')}, expected {FORMAT}")
    verify_checksum(blob, path)
    return blob


def _first_non_finite(value: Any, where: str) -> str | None:
    """The path of the first floating tensor under ``value`` holding NaN or inf, or None."""
    for path, leaf in leaves(value, where):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.numel():
            if not bool(torch.isfinite(leaf).all()):
                return path
    return None


def _shown(path: str) -> str:
    return path.replace("/'", ".").replace("'", "").lstrip(".")


def check_resumable(
    blob: Mapping[str, Any],
    path: str | os.PathLike,
    backbone: nn.Module,
    num_classes: int,
    head_state: Mapping[str, Any] | None = None,
) -> None:
    """ValueError naming ``path`` and the cause unless the checkpoint ``blob`` can continue the
    run being built: its weights and optimizer state finite, its number of classes
    ``num_classes`` (the data's identities now), its backbone's and (``head_state``: the new
    head's full state, where it is at hand) head's keys and shapes those of the run's."""
    for part in ("backbone", "head", "optimizer"):
        bad = _first_non_finite(blob.get(part), part)
        if bad is not None:
            raise ValueError(
                f"--resume from {path}: {_shown(bad)} holds NaN or inf values; a run cannot "
                "continue from it (start again, or from a copy saved before it broke)"
            )
    names = (blob.get("model_info") or {}).get("identity_names")
    saved = len(names) if isinstance(names, list) and names else None
    if saved is None and isinstance(blob.get("head"), Mapping):
        weight = blob["head"].get("weight")
        sub = int((blob.get("model_info") or {}).get("head_kwargs", {}).get("k", 1) or 1)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            saved = weight.shape[0] // max(sub, 1)
    if saved is not None and saved != num_classes:
        raise ValueError(
            f"--resume from {path}: the checkpoint's head has {saved} classes but the data now "
            f"has {num_classes} identities (the dataset gained or lost identities since the "
            "run started); resume with the same data, or start a new run"
        )
    from marginface.backbones.checkpoint import state_dict_mismatch

    missing, unexpected, misshaped = state_dict_mismatch(backbone, blob["backbone"])
    problems = [(p, k) for p, k in (("missing", missing), ("unexpected", unexpected),
                                     ("mis-shaped", misshaped)) if k]  # fmt: skip
    if head_state is not None and isinstance(blob.get("head"), Mapping):
        misshaped_head = [
            f"{k}: file {tuple(blob['head'][k].shape)} vs model {tuple(v.shape)}"
            for k, v in head_state.items()
            if isinstance(v, torch.Tensor)
            and isinstance(blob["head"].get(k), torch.Tensor)
            and tuple(blob["head"][k].shape) != tuple(v.shape)
        ]
        if misshaped_head:
            problems.append(("mis-shaped head", misshaped_head))
    if problems:
        text = "; ".join(f"{label} keys: {', '.join(keys[:3])}" for label, keys in problems)
        raise ValueError(
            f"--resume from {path}: the checkpoint does not fit the model being built ({text})"
        )


# ------------------------------------------------------------------------- a run's checkpoint
def run_payload(
    run: Any,
    cfg: TrainConfig,
    position: dict[str, int],
    rng: dict[str, Any],
    head_state: dict[str, Any] | None,
    best: dict[str, Any] | None,
    model_info: dict[str, Any],
    world_size: int,
) -> dict[str, Any]:
    """What ``checkpoint.pt`` holds of a run (``run``: its ``model``, ``optimizer``,
    ``scheduler`` and ``scaler``) at ``position``; ``head_state``: the classifier's full state."""
    return {
        "backbone": run.model.backbone.state_dict(),
        "head": head_state,
        "sharded_head": cfg.partial_fc,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": rng,
        "position": dict(position, seed=cfg.seed),
        "best": best,
        "config": cfg.to_dict(),
        "model_info": model_info,
        "world_size": world_size,
    }


def write_run(
    output: Path, payload: dict[str, Any], backbone: nn.Module, model_info: dict[str, Any]
) -> None:
    """``output``/checkpoint.pt from ``payload``, then model.pt + model.json (each written,
    then renamed)."""
    from marginface.backbones.checkpoint import save_model

    save_checkpoint(output / "checkpoint.pt", payload)
    save_model(output, backbone, model_info)


def check_resume_config(new: TrainConfig, saved: dict[str, Any], source: Path) -> None:
    """ValueError unless ``new`` agrees with the checkpoint's config on every key that changes
    the result (all but :data:`~marginface.training.config.RESUME_FREE_KEYS`)."""
    old = TrainConfig.from_dict(saved, f"{source} (config)")
    clashes = [
        f"{key}: checkpoint {getattr(old, key)!r}, now {getattr(new, key)!r}"
        for key in old.to_dict()
        if key not in RESUME_FREE_KEYS and getattr(old, key) != getattr(new, key)
    ]
    if clashes:
        raise ValueError(
            f"--resume from {source}: the configuration differs from the checkpoint's in keys "
            f"that would change the run: {'; '.join(clashes)}"
        )


@dataclass(frozen=True)
class Resumed:
    """What a checkpoint gives a resumed run beyond its weights and optimizer state: the
    ``position`` and ``rng`` state it was saved at, ``best`` validation, the ``threshold`` of
    its model info and the ``world_size`` that saved it; from :func:`resume_run`, also the
    ``history`` of the steps logged up to it (main process) and, when saved by another number
    of processes, the ``reshard`` note of :func:`reshard_position` (``position`` is then the
    moved one)."""

    position: dict[str, int]
    rng: dict[str, Any]
    best: dict[str, Any] | None
    threshold: float | None
    world_size: int
    history: list[dict[str, Any]] = field(default_factory=list)
    reshard: dict[str, int] | None = None


def resume_into(path: Path, cfg: TrainConfig, run: Any, num_classes: int) -> Resumed:
    """Load the checkpoint ``path`` into ``run`` (its ``model``, ``optimizer``, ``scheduler``,
    ``scaler``, just built from ``cfg`` for ``num_classes`` classes), after the checks of
    :func:`check_resume_config` and :func:`check_resumable`."""
    blob = load_checkpoint(path, map_location="cpu")  # RNG states must stay on CPU
    check_resume_config(cfg, blob["config"], path)
    saved_world = int(blob.get("world_size", 1))
    model = run.model
    head_state = None if cfg.partial_fc else model.head.full_state_dict()
    check_resumable(blob, path, model.backbone, num_classes, head_state)
    model.backbone.load_state_dict(blob["backbone"])
    model.head.load_full_state_dict(blob["head"])
    run.optimizer.load_state_dict(blob["optimizer"])
    run.scheduler.load_state_dict(blob["scheduler"])
    run.scaler.load_state_dict(blob["scaler"])
    return Resumed(
        position={k: int(blob["position"][k]) for k in ("epoch", "batch", "step")},
        rng=blob["rng"],
        best=blob.get("best"),
        threshold=(blob.get("model_info") or {}).get("threshold"),
        world_size=saved_world,
    )


def resume_run(output: Path, cfg: TrainConfig, run: Any, world_size: int, is_main: bool) -> Resumed:
    """Load ``output``/checkpoint.pt into ``run`` (:func:`resume_into`) for ``world_size``
    processes; on the main process cut the run's ``log.jsonl`` back to the checkpoint's step,
    its train records the :attr:`Resumed.history`."""
    resumed = resume_into(output / "checkpoint.pt", cfg, run, run.num_classes)
    position, reshard = resumed.position, None
    if resumed.world_size != world_size:
        position, reshard = reshard_position(
            position, resumed.world_size, world_size, cfg, run.micro_per_epoch
        )
    history = []
    if is_main:
        kept = truncate_log(output / "log.jsonl", position["step"])
        history = [r for r in kept if r.get("type") == "train"]
    return replace(resumed, position=position, history=history, reshard=reshard)


def reshard_position(
    position: dict[str, int],
    saved_world: int,
    world: int,
    cfg: TrainConfig,
    micro_per_epoch: int,
) -> tuple[dict[str, int], dict[str, int]]:
    """Where a run saved by ``saved_world`` processes continues with ``world``, and the note
    that says so (the ``reshard`` event).

    An epoch's permutation does not depend on the number of processes, and its first
    ``batch x batch_size x saved_world`` items are the ones already trained on. The run goes
    on at the first batch of the new world size that starts at or after that many items
    (skipping fewer than one global batch of this epoch), on a step boundary; past the
    epoch's last batch it goes on with the next epoch."""
    done = position["batch"] * cfg.batch_size * saved_world
    global_batch = cfg.batch_size * world * cfg.accumulate
    batch = -(-done // global_batch) * cfg.accumulate
    moved = {"epoch": position["epoch"], "batch": batch, "step": position["step"]}
    if batch >= micro_per_epoch:
        moved = {"epoch": position["epoch"] + 1, "batch": 0, "step": position["step"]}
    reached = min(batch, micro_per_epoch) * cfg.batch_size * world
    skipped = max(0, reached - done)
    note = {
        "saved_world_size": saved_world,
        "world_size": world,
        "items_done": done,
        "items_skipped": skipped,
        "epoch": moved["epoch"],
        "batch": moved["batch"],
    }
    return moved, note


@dataclass(frozen=True)
class Boundary:
    """The state at a step boundary: the ``position``, the ``rng`` states and the model's
    ``buffers`` (a forward pass changes BatchNorm statistics and head state, so an interrupt
    mid-step restores them)."""

    position: dict[str, int]
    rng: dict[str, Any]
    buffers: dict[str, Tensor]


def snapshot(model: nn.Module, position: dict[str, int]) -> Boundary:
    """The :class:`Boundary` of ``model`` at ``position``, now."""
    return Boundary(
        position=dict(position),
        rng=capture_rng(),
        buffers={k: v.detach().clone() for k, v in model.named_buffers()},
    )


def restore(boundary: Boundary, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Put ``model``'s buffers and the RNG states back to ``boundary``; drop the gradients."""
    model.load_state_dict(boundary.buffers, strict=False)
    restore_rng(boundary.rng)
    optimizer.zero_grad(set_to_none=True)


def save_after_error(
    exc: Exception, boundary: Boundary, run: Any, save: Any, output: Path, is_main: bool
) -> None:
    """Save the last completed step (``boundary``, with ``save(position, rng, reason)``)
    before ``exc`` is reported, so no work is lost; a note on ``exc`` says where it is, or
    why saving failed too.

    Not when saving the classifier is collective (Partial FC over several processes): the
    other processes may be stuck elsewhere."""
    position = boundary.position
    if run.model.head.collective_state or position["step"] == 0:
        return
    restore(boundary, run.model, run.optimizer)
    try:
        save(position, boundary.rng, "error")
    except Exception as save_error:  # noqa: BLE001 - the first error is the one to report
        exc.add_note(f"saving a checkpoint after it failed too: {save_error}")
        return
    if is_main:
        exc.add_note(
            f"checkpoint of step {position['step']} saved in {output}; continue with "
            f"marginface train --output {output} --resume"
        )
