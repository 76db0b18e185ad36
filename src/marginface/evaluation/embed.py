"""Embeddings of a dataset (with flip test) and pair scores.

Flip test (as in the ArcFace evaluation code): the embedding of an image is the sum of the
embeddings of the image and of its horizontal mirror, then L2-normalised.  Pairs are scored by
the cosine similarity of the normalised embeddings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from marginface.evaluation.metrics import verification_metrics


def _images_of(batch: Any) -> Tensor:
    """The image tensor of a collated batch: items may be tensors or ``(image, label)``."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(
        f"dataset items must be image tensors or (image, label) tuples, got {type(batch)}"
    )


@torch.inference_mode()
def embed_images(model: nn.Module, images: Tensor, flip: bool = True) -> Tensor:
    """L2-normalised float32 embeddings (B, D) of a batch of images (B, 3, H, W).

    The model is used as it is (call ``model.eval()`` first) on the images' device.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    emb = model(images).float()
    if emb.ndim != 2:
        raise ValueError(f"the model must return (B, D) embeddings, got {tuple(emb.shape)}")
    if flip:
        emb = emb + model(torch.flip(images, dims=[3])).float()
    return F.normalize(emb, dim=1)


def embed_dataset(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    flip: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_workers: int = 0,
) -> np.ndarray:
    """Embed every item of ``dataset`` in order.

    Args:
        model: backbone mapping (B, 3, H, W) -> (B, D); put in eval mode for the call (its
            previous mode is restored) and moved to ``device``.
        dataset: items are image tensors (3, H, W) or ``(image, label)`` tuples.
        batch_size: images per forward pass.
        flip: add the embedding of the mirrored image before normalising.
        device: where to run the model.
        progress: show a tqdm progress bar.
        num_workers: DataLoader worker processes (0 = in this process).

    Returns: (N, D) float32 array, rows L2-normalised.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("cannot embed an empty dataset")
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    model.to(device)
    chunks: list[np.ndarray] = []
    try:
        with tqdm(total=n, desc="embedding", unit="img", disable=not progress) as bar:
            for batch in loader:
                images = _images_of(batch).to(device, non_blocking=True)
                emb = embed_images(model, images, flip=flip)
                if not torch.isfinite(emb).all():
                    raise ValueError("the model produced non-finite embeddings (NaN or inf)")
                chunks.append(emb.cpu().numpy().astype(np.float32, copy=False))
                bar.update(len(images))
    finally:
        model.train(was_training)
    return np.concatenate(chunks, axis=0)


def pair_scores(embeddings: np.ndarray) -> np.ndarray:
    """Cosine scores (N,) of pairs stored consecutively: rows 2k and 2k+1 form pair k.

    The rows must already be L2-normalised.
    """
    if embeddings.ndim != 2 or len(embeddings) % 2:
        raise ValueError(
            f"pair embeddings must be (2N, D) with an even row count, got {embeddings.shape}"
        )
    a = embeddings[0::2].astype(np.float64)
    b = embeddings[1::2].astype(np.float64)
    return np.sum(a * b, axis=1)


def evaluate_pairs(
    model: nn.Module,
    pairs: Any,
    batch_size: int = 64,
    flip: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = True,
    n_folds: int = 10,
    num_workers: int = 0,
    threshold_grid: str = "exact",
) -> tuple[dict[str, Any], np.ndarray]:
    """Verification metrics of ``model`` on a pair set.

    Args:
        pairs: a ``marginface.data.PairSet``: ``.images`` (2N images; pair k is images 2k and
            2k+1) and ``.issame`` (N booleans).
        n_folds: folds of the LFW-style accuracy; lowered to the number of pairs when there
            are fewer pairs than folds.
        num_workers: DataLoader worker processes decoding the images.
        threshold_grid: ``exact`` or ``insightface`` (see :mod:`marginface.evaluation.metrics`).

    Returns: ``(metrics, scores)``: the dict of
    :func:`~marginface.evaluation.metrics.verification_metrics` and the (N,) cosine scores.
    """
    issame = np.asarray(pairs.issame, dtype=bool)
    num_images = len(pairs.images)
    if num_images != 2 * len(issame):
        name = getattr(pairs, "name", "pairs")
        raise ValueError(
            f"pair set {name!r}: {num_images} images for {len(issame)} pairs "
            f"(expected {2 * len(issame)})"
        )
    embeddings = embed_dataset(
        model,
        pairs.images,
        batch_size=batch_size,
        flip=flip,
        device=device,
        progress=progress,
        num_workers=num_workers,
    )
    scores = pair_scores(embeddings)
    folds = max(2, min(n_folds, len(issame)))
    metrics = verification_metrics(scores, issame, n_folds=folds, threshold_grid=threshold_grid)
    return metrics, scores
