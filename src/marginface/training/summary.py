"""The end-of-run summary: how many training images are nearer their own class centre.

At the end of a run that was not interrupted, up to ``summary_images`` training images (a
draw fixed by the seed) are embedded by the trained backbone and compared with the class
centres of the trained head (every rank's with Partial FC): the share nearer their own
centre than any other is what the verdict (:mod:`marginface.training.verdict`) judges by.
The random number generators are put back afterwards (augmenting datasets draw from them).
"""

from __future__ import annotations

from typing import Any

import torch

from marginface.training.checkpoint import capture_rng, restore_rng


def nearer_own_summary(
    run: Any, cfg: Any, env: Any, history: list[dict[str, Any]], logger: Any
) -> dict[str, Any] | None:
    """``{nearer_own_share, images}`` of ``run`` (its ``dataset``, ``model``), logged as the
    ``summary`` event at the last step of ``history``; None on the other processes, with
    ``summary_images`` 0 or without class centres. Collective with Partial FC."""
    n = min(cfg.summary_images, len(run.dataset))
    if n == 0:
        return None
    weight = run.model.head.full_weight()  # collective with Partial FC
    if not env.is_main or weight is None:
        return None
    from marginface.evaluation.angles import (
        centre_angles,
        class_centres,
        embed_raw,
        nearer_own_share,
    )

    rng = torch.Generator().manual_seed(cfg.seed + 1)
    idx = torch.randperm(len(run.dataset), generator=rng)[:n].sort().values.tolist()
    features, labels = [], []
    devices_rng = capture_rng()  # augmenting datasets draw from the global RNG
    try:
        for start in range(0, n, 256):  # a batch of images in memory at a time
            items = [run.dataset[i] for i in idx[start : start + 256]]
            images = torch.stack([torch.as_tensor(im) for im, _ in items])
            features.append(embed_raw(run.model.backbone, images, env.device))
            labels += [int(y) for _, y in items]
    finally:
        restore_rng(devices_rng)
    centres = class_centres(run.model.head.head, weight)
    share = nearer_own_share(*centre_angles(torch.cat(features), torch.tensor(labels), centres))
    summary = {"nearer_own_share": share, "images": n}
    logger.event("summary", history[-1]["step"] if history else 0, **summary)
    return summary
