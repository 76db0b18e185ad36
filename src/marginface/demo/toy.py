"""The 2-D circle / 3-D sphere toy: a small MLP on fixed features of a few identities' faces.

The papers' toy figures (SphereFace's 2-D / 3-D features, ArcFace's 8 identities in 2-D) show
each identity as a tight arc, the arcs far apart, for the margin losses, and wider, closer
wedges for plain softmax. They picture *converged* models; training the image backbone to
convergence with a 2- or 3-wide embedding costs minutes per head, so the toy trains something
cheaper, and says so:

* input: the toy images' pixels reduced to their first ``components`` principal components
  (PCA over the toy images, each component scaled to unit variance): a fixed linear function
  of the pixels the backbone would see, computed without the labels;
* model: an MLP ``components -> hidden -> hidden -> dim`` (ReLU); its output is the embedding;
* head: the head under test (:func:`marginface.heads.create_head`); a cosine head without an
  explicit s gets :func:`marginface.heads.scale.auto_scale`'s scale for the toy's C classes
  (:func:`marginface.heads.scale.resolve_scale`); :data:`TOY_HEAD_KWARGS` lists the toy's
  one departure from the usual hyperparameters (SphereFace's lambda, measured reason in
  :data:`TOY_OVERRIDES_REASON`);
* training: full batch (every toy image every step), AdamW with a linear warm-up and a cosine
  decay of the learning rate, the margin blended in over the first ``margin_warmup_steps``
  steps (target ``w psi(cos) + (1 - w) cos``, w from 0 to 1, as ``marginface train
  --margin-warmup-epochs``), seeded: the same seed gives the same features (same torch threads).

The statistics (:func:`marginface.demo.sphere_plots.toy_statistics`) are those of the toy
images' embeddings after training, i.e. of the images trained on, as in the papers' figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from marginface.demo.cache import CachedFaces
from marginface.demo.config import TOY_OVERRIDES, TOY_OVERRIDES_REASON  # noqa: F401
from marginface.demo.runner import ToyResult

#: the toy's departures from the heads' usual hyperparameters and their measured reason
TOY_HEAD_KWARGS = TOY_OVERRIDES


@dataclass(frozen=True)
class ToySchedule:
    """How the toy trains (module doc); the defaults are the measured ones of docs/demo.md."""

    steps: int = 800
    lr: float = 1e-2
    weight_decay: float = 1e-4
    components: int = 32
    hidden: int = 128
    warmup_steps: int = 50
    margin_warmup_steps: int = 100

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def pca_features(pixels: np.ndarray, components: int) -> np.ndarray:
    """(N, components) float32: the images' coordinates on their first principal components,
    each scaled to unit variance. ``pixels`` (N, ...) any numeric array, one row per image;
    the sign of each component is fixed (its largest loading positive), so the result is a
    function of the pixels alone."""
    x = np.asarray(pixels, dtype=np.float64).reshape(len(pixels), -1) / 255.0
    if not 0 < components <= min(x.shape):
        raise ValueError(f"components must lie in [1, {min(x.shape)}], got {components}")
    x = x - x.mean(axis=0)
    # principal directions from the N x N Gram matrix (N images, far fewer than pixels):
    # x x^T = U S^2 U^T and the k-th direction is u_k^T x / S_k (0.05 s where an SVD of x takes 0.5)
    eigval, u = np.linalg.eigh(x @ x.T)
    vt = u[:, np.argsort(eigval)[::-1][:components]].T @ x
    vt /= np.maximum(np.linalg.norm(vt, axis=1, keepdims=True), 1e-300)
    vt *= np.sign(vt[np.arange(components), np.abs(vt).argmax(axis=1)])[:, None]
    coords = x @ vt.T
    coords /= np.maximum(coords.std(axis=0), 1e-12)
    return coords.astype(np.float32)


def toy_mlp(components: int, hidden: int, dim: int) -> nn.Sequential:
    """The toy's embedding network: ``components -> hidden -> hidden -> dim`` with ReLUs and a
    linear embedding (no BatchNorm on it, unlike ``small_cnn``: docs/demo.md says why)."""
    return nn.Sequential(
        nn.Linear(components, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, dim),
    )


def train_toy(
    faces: CachedFaces,
    head: str,
    head_kwargs: Mapping[str, Any] | None = None,
    dim: int = 2,
    seed: int = 0,
    schedule: ToySchedule | None = None,
) -> ToyResult:
    """Train ``head`` with a ``dim``-wide embedding on the toy images ``faces`` (module doc);
    deterministic for ``seed`` (and the torch thread count).

    ``head_kwargs``: the head's hyperparameters; None = the toy's (:data:`TOY_HEAD_KWARGS`,
    else the usual ones). A missing s of a cosine head is ``"auto"``: the scale for the toy's
    number of classes, not the main comparison's.

    Returns a :class:`ToyResult` (:mod:`marginface.demo.runner`): the embeddings of
    every toy image, the labels, the head's class centres, the loss per step, the final loss
    (of the last step), the training time, and the head's hyperparameters (s resolved).
    """
    from marginface.heads import create_head
    from marginface.heads.scale import resolve_scale

    sched = schedule or ToySchedule()
    labels = np.asarray(faces.labels, dtype=np.int64)
    classes = int(labels.max()) + 1
    chosen = TOY_HEAD_KWARGS.get(head, {}) if head_kwargs is None else head_kwargs
    kwargs, _ = resolve_scale(head, dim, classes, dict(chosen))
    t0 = time.perf_counter()
    x = torch.from_numpy(pca_features(faces.pixels, sched.components))
    y = torch.from_numpy(labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = toy_mlp(sched.components, sched.hidden, dim)
        margin_head = create_head(head, dim, classes, **kwargs)
    params = list(model.parameters()) + list(margin_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=sched.lr, weight_decay=sched.weight_decay)

    def rate(step: int) -> float:  # linear warm-up, then cosine to 0
        if step < sched.warmup_steps:
            return (step + 1) / sched.warmup_steps
        done = (step - sched.warmup_steps) / max(1, sched.steps - sched.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    margin_head.train()
    losses = np.empty(sched.steps)
    for step in range(sched.steps):
        if sched.margin_warmup_steps > 0:  # as TrainConfig.margin_warmup_epochs: w from 0 to 1
            margin_head.margin_weight = min(1.0, step / sched.margin_warmup_steps)
        loss = margin_head.loss(model(x), y, fused=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses[step] = float(loss.detach())
    model.eval()
    with torch.no_grad():
        features = model(x).numpy().astype(np.float32)
    centres = margin_head.weight.detach().float().reshape(-1, dim).numpy().copy()
    history = np.stack([np.arange(1, sched.steps + 1, dtype=np.float64), losses], axis=1)
    return ToyResult(
        head=head,
        dim=dim,
        head_kwargs=dict(margin_head.hparams()),
        features=features,
        labels=labels.copy(),
        centres=centres,
        final_loss=float(losses[-1]) if sched.steps else float("nan"),
        train_time_s=time.perf_counter() - t0,
        history=history,
    )
