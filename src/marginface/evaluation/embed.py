"""Embeddings of a dataset (with flip test) and pair scores.

Flip test (as in the ArcFace evaluation code): the embedding of an image is the sum of the
embeddings of the image and of its horizontal mirror, then L2-normalised.  Pairs are scored by
the cosine similarity of the normalised embeddings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from marginface.checks import check_int
from marginface.data.formats.verification import distinct_images
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


@dataclass(frozen=True)
class EmbedOptions:
    """How images are embedded, in one object shared by every caller (the CLI's ``eval``,
    ``embed``, ``search``, validation during training, the demo).

    Args:
        batch_size: images per forward pass (>= 1).
        flip: flip test: add the embedding of the mirrored image before normalising.
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a torch.device).
        workers: DataLoader worker processes decoding the images (0 = in this process).
        progress: show a tqdm progress bar.

    >>> EmbedOptions(batch_size=128, flip=False)
    EmbedOptions(batch_size=128, flip=False, device='cpu', workers=0, progress=True)
    >>> EmbedOptions().replace(progress=False).progress
    False
    """

    batch_size: int = 64
    flip: bool = True
    device: str | torch.device = "cpu"
    workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name, minimum in (("batch_size", 1), ("workers", 0)):
            check_int(getattr(self, name), name, minimum)

    def replace(self, **changes: Any) -> EmbedOptions:
        """A copy with ``changes`` (field names) applied."""
        return dataclasses.replace(self, **changes)


@torch.inference_mode()
def embed_images(
    model: nn.Module, images: Tensor, flip: bool = True, normalize: bool = True
) -> Tensor:
    """Float32 embeddings (B, D) of a batch of images (B, 3, H, W), L2-normalised unless
    ``normalize`` is False (then the raw sum of the image's and, with ``flip``, its mirror's).

    The model is used as it is (call ``model.eval()`` first) on the images' device.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    emb = model(images).float()
    if emb.ndim != 2:
        raise ValueError(f"the model must return (B, D) embeddings, got {tuple(emb.shape)}")
    if flip:
        emb = emb + model(torch.flip(images, dims=[3])).float()
    return F.normalize(emb, dim=1) if normalize else emb


def embed_dataset(
    model: nn.Module,
    dataset: Dataset,
    options: EmbedOptions | None = None,
    *,
    normalize: bool = True,
    dtype: Any = np.float32,
    desc: str = "embedding",
) -> np.ndarray:
    """Embed every item of ``dataset`` in order.

    Args:
        model: backbone mapping (B, 3, H, W) -> (B, D); put in eval mode for the call (its
            previous mode is restored) and moved to ``options.device``.
        dataset: items are image tensors (3, H, W) or ``(image, label)`` tuples.
        options: batch size, flip test, device, workers, progress (:class:`EmbedOptions`;
            None = its defaults).
        normalize: L2-normalise each row (the default); False keeps the raw (flip-summed)
            features, as IJB's "norm score" mode does (:mod:`marginface.evaluation.ijb`).
        dtype: of the returned array (the model's float32 output, converted).
        desc: the progress bar's label.

    Returns: (N, D) array of ``dtype``, rows L2-normalised when ``normalize``.
    """
    from tqdm.auto import tqdm

    options = EmbedOptions() if options is None else options
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("cannot embed an empty dataset")
    device = torch.device(options.device)
    loader = DataLoader(
        dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.workers
    )
    was_training = model.training
    model.eval()
    model.to(device)
    chunks: list[np.ndarray] = []
    try:
        with tqdm(total=n, desc=desc, unit="img", disable=not options.progress) as bar:
            for batch in loader:
                images = _images_of(batch).to(device, non_blocking=True)
                emb = embed_images(model, images, flip=options.flip, normalize=normalize)
                if not torch.isfinite(emb).all():
                    raise ValueError("the model produced non-finite embeddings (NaN or inf)")
                chunks.append(emb.cpu().numpy().astype(dtype, copy=False))
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
    options: EmbedOptions | None = None,
    *,
    n_folds: int = 10,
    threshold_grid: str = "exact",
    fold_seed: int | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Verification metrics of ``model`` on a pair set.

    Each distinct image is embedded once, however many pairs name it
    (:func:`marginface.data.formats.verification.distinct_images`).

    Args:
        pairs: a ``marginface.data.PairSet``: ``.images`` (2N images; pair k is images 2k and
            2k+1) and ``.issame`` (N booleans).
        options: how the images are embedded (:class:`EmbedOptions`).
        n_folds: folds of the LFW-style accuracy; lowered to the number of pairs when there
            are fewer pairs than folds.
        threshold_grid: ``exact`` or ``insightface`` (see :mod:`marginface.evaluation.metrics`).
        fold_seed: None: the folds are cut from the pairs in their order (LFW's protocol);
            a seed: from the pairs shuffled by it (:func:`fold_order`), for a list whose order
            is not LFW's (all genuine pairs first). Only the accuracy depends on the folds.

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
    first, inverse = distinct_images(pairs.images)
    images = pairs.images if len(first) == num_images else Subset(pairs.images, first.tolist())
    embeddings = embed_dataset(model, images, options)[inverse]
    scores = pair_scores(embeddings)
    folds = max(2, min(n_folds, len(issame)))
    order = fold_order(len(issame), fold_seed)
    metrics = verification_metrics(
        scores[order], issame[order], n_folds=folds, threshold_grid=threshold_grid
    )
    return metrics, scores


def fold_order(n: int, fold_seed: int | None = None) -> np.ndarray:
    """The order in which ``n`` pairs are cut into folds: as given (None), or shuffled by
    ``fold_seed``.

    >>> fold_order(4).tolist()
    [0, 1, 2, 3]
    >>> sorted(fold_order(4, fold_seed=1).tolist())
    [0, 1, 2, 3]
    """
    if fold_seed is None:
        return np.arange(n)
    return np.random.default_rng([fold_seed, 23]).permutation(n)
