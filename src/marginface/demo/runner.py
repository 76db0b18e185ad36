"""The comparison itself: train every head the same way, evaluate on held-out identities.

For each seed and head: :func:`marginface.training.train` on the cached training images (same
backbone, schedule, seed, data order; only the head differs), then

* verification on identities never seen in training: flip-test embeddings of the held-out
  images, cosine scores of the generated pairs (the pairs ``open_pairs`` generates from a
  dataset spec), :func:`marginface.evaluation.verification_metrics`;
* on (a sample of) the training images: each sample's angle to its own class centre and to the
  nearest other centre, with the head's own class centres (its weight rows).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from marginface.data.transforms import TRAINING_TRANSFORMS
from marginface.demo.cache import CachedFaces
from marginface.demo.config import DemoConfig
from marginface.demo.progress import DemoProgress
from marginface.evaluation import EmbedOptions, embed_dataset, verification_metrics
from marginface.evaluation.angles import centre_angles, class_centres, embed_raw
from marginface.training import train


@dataclass
class RunResult:
    """One head trained with one seed and evaluated.

    ``metrics``: :func:`verification_metrics` on the held-out pairs; ``scores``: the pairs'
    cosine scores; ``history``: (step, loss) per optimizer step; ``angles_own`` /
    ``angles_other``: degrees from each sampled training image to its own / nearest other
    class centre; times in seconds (``cpu_s``: CPU time of this process, all threads).
    """

    head: str
    seed: int
    head_kwargs: dict[str, Any]
    metrics: dict[str, Any]
    scores: np.ndarray
    history: np.ndarray
    train_time_s: float
    train_cpu_s: float
    eval_time_s: float
    angles_own: np.ndarray
    angles_other: np.ndarray
    run_dir: Path
    steps: int = 0


@dataclass
class ToyResult:
    """One head trained with a ``dim``-wide (2 or 3) embedding on the toy identities.

    ``features`` (N, dim) raw embeddings of the toy images (eval mode, no flip), ``labels``
    (N,), ``centres`` (C, dim) the head's class centres (weight rows), ``final_loss``.
    """

    head: str
    dim: int
    head_kwargs: dict[str, Any]
    features: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    final_loss: float
    train_time_s: float
    history: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def steps_of(num_items: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of a run (incomplete batches are dropped, as the trainer does)."""
    return (num_items // batch_size) * epochs


def _train(
    cfg: DemoConfig,
    head: str,
    head_kwargs: dict[str, Any],
    dataset: CachedFaces,
    run_dir: Path,
    seed: int,
    progress: DemoProgress,
    name: str,
) -> tuple[Any, float]:
    """Train one run with :func:`marginface.training.train`; returns (TrainResult, CPU s)."""
    if run_dir.exists():  # the demo owns DIR/runs: a re-run replaces its old runs
        shutil.rmtree(run_dir)
    config = cfg.train_config(
        data=dataset.spec,
        head=head,
        head_kwargs=dict(head_kwargs),
        image_size=int(dataset.image_size[0]),
        seed=seed,
        output=str(run_dir),
        progress=False,
        loss_watch=0.0,  # the demo judges convergence itself (share nearer own centre)
        summary_images=0,
        tensorboard=False,
        log_every=10,
    )
    steps = steps_of(len(dataset), config.batch_size, config.epochs)
    progress.start_run(name, steps, config.batch_size)
    cpu0 = time.process_time()
    try:
        result = train(
            config, dataset=dataset.with_transforms(TRAINING_TRANSFORMS), on_step=progress.step
        )
    finally:
        progress.end_run()
    return result, time.process_time() - cpu0


def evaluate_run(
    backbone: nn.Module,
    test_set: CachedFaces,
    pairs: np.ndarray,
    issame: np.ndarray,
    device: str,
) -> tuple[dict[str, Any], np.ndarray]:
    """Verification on the held-out pairs: each held-out image embedded once (flip test),
    then the cosine of every pair (``pairs`` (N, 2) item indices).

    ROC, TAR@FAR, EER and AUC use every pair; the 10-fold accuracy and its threshold use the
    balanced part (the interleaved genuine / impostor pairs at the front, as ``generate_pairs``
    lays them out), where accuracy means what it means on LFW."""
    options = EmbedOptions(batch_size=256, device=device, progress=False)  # with flip test
    emb = embed_dataset(backbone, test_set, options, dtype=np.float64)
    scores = np.sum(emb[pairs[:, 0]] * emb[pairs[:, 1]], axis=1)
    metrics = verification_metrics(scores, issame)
    balanced = 2 * int(min(issame.sum(), (~issame).sum()))
    if balanced < len(issame):
        lfw = verification_metrics(scores[:balanced], issame[:balanced])
        for key in ("accuracy", "accuracy_std", "best_threshold", "fold_accuracies",
                    "fold_thresholds"):  # fmt: skip
            metrics[key] = lfw[key]
        metrics["accuracy_pairs"] = balanced
    return metrics, scores


def run_head(
    cfg: DemoConfig,
    head: str,
    seed: int,
    train_set: CachedFaces,
    test_set: CachedFaces,
    pairs: np.ndarray,
    issame: np.ndarray,
    progress: DemoProgress,
) -> RunResult:
    """Train ``head`` with ``seed`` on ``train_set`` and evaluate it (see the module doc)."""
    kwargs = cfg.head_kwargs.get(head, {})
    run_dir = Path(cfg.output) / "runs" / f"{head}-seed{seed}"
    result, cpu_s = _train(
        cfg, head, kwargs, train_set, run_dir, seed, progress, f"{head} seed {seed}"
    )
    t0 = time.perf_counter()
    metrics, scores = evaluate_run(result.backbone, test_set, pairs, issame, cfg.device)
    rng = np.random.default_rng([seed, 11])
    n = min(cfg.angle_samples, len(train_set))
    idx = np.sort(rng.choice(len(train_set), size=n, replace=False))
    features = embed_raw(result.backbone, train_set.images(idx), cfg.device)
    own, other = centre_angles(
        features, torch.from_numpy(train_set.labels[idx]), class_centres(result.head)
    )
    history = np.array([(r["step"], r["loss"]) for r in result.history], dtype=np.float64)
    return RunResult(
        head=head,
        seed=seed,
        head_kwargs=dict(result.head.hparams()),
        metrics=metrics,
        scores=scores,
        history=history.reshape(-1, 2),
        train_time_s=float(result.train_time_s),
        train_cpu_s=float(cpu_s),
        eval_time_s=time.perf_counter() - t0,
        angles_own=own,
        angles_other=other,
        run_dir=run_dir,
        steps=int(result.steps),
    )
