"""How hard is the synthetic dataset? Plain softmax on it, verification on unseen identities.

For each difficulty, renders ``synthetic:IDSxIMAGES`` (training) and a held-out set of unseen
identities (``first=`` far beyond), trains a small CNN with plain softmax cross-entropy, and
prints the held-out 10-fold verification accuracy (cosine of flip-free embeddings).

    python benchmarks/synthetic_difficulty.py --difficulties 0.5 1 1.5 --epochs 15

Rendering uses all CPU cores (multiprocessing); training uses CUDA when present.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marginface.data import open_dataset, open_pairs


def _render(args: tuple[str, int, int, int]) -> np.ndarray:
    spec, size, start, stop = args
    ds = open_dataset(spec, image_size=size)
    return np.stack([ds[i][0].numpy() for i in range(start, stop)])


def render_all(spec: str, size: int, n: int, workers: int) -> torch.Tensor:
    chunks = [(spec, size, s, min(n, s + 500)) for s in range(0, n, 500)]
    with mp.Pool(workers) as pool:
        return torch.from_numpy(np.concatenate(pool.map(_render, chunks)))


def render_pairs(spec: str, size: int, workers: int) -> tuple[torch.Tensor, np.ndarray]:
    pairs = open_pairs(spec, image_size=size)
    ds, idx = pairs.images.dataset, pairs.images.indices
    all_images = render_all(spec, size, len(ds), workers)
    return all_images[torch.from_numpy(idx)], pairs.issame


class SmallCNN(nn.Module):
    def __init__(self, embedding: int = 128) -> None:
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                nn.MaxPool2d(2),
            )  # fmt: skip

        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 128))
        self.fc = nn.Sequential(nn.Flatten(), nn.LazyLinear(embedding), nn.BatchNorm1d(embedding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def ten_fold_accuracy(scores: np.ndarray, issame: np.ndarray) -> float:
    folds = np.array_split(np.arange(len(scores)), 10)
    accs = []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        thresholds = np.sort(scores[train])
        best = max(thresholds, key=lambda t: ((scores[train] > t) == issame[train]).mean())
        accs.append(((scores[test] > best) == issame[test]).mean())
    return float(np.mean(accs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--difficulties", type=float, nargs="+", default=[1.0])
    parser.add_argument("--workers", type=int, default=mp.cpu_count())
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for difficulty in args.difficulties:
        t0 = time.time()
        spec = f"synthetic:{args.identities}x{args.images},difficulty={difficulty:g}"
        n = args.identities * args.images
        x = render_all(spec, args.size, n, args.workers)
        y = torch.from_numpy(open_dataset(spec).labels)
        held = f"synthetic:300x10,difficulty={difficulty:g},first=5000000"
        px, issame = render_pairs(held, args.size, args.workers)
        t_render = time.time() - t0
        torch.manual_seed(0)
        model = SmallCNN().to(device)
        model(x[:2].to(device))
        head = nn.Linear(128, args.identities).to(device)
        params = list(model.parameters()) + list(head.parameters())
        steps = args.epochs * (n // 128)
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
        model.train()
        x_dev, y_dev = x.to(device), y.to(device)
        for _epoch in range(args.epochs):
            perm = torch.randperm(n, device=device)
            for s in range(n // 128):
                b = perm[s * 128 : (s + 1) * 128]
                xb = x_dev[b]
                flip = torch.rand(len(b), device=device) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
                loss = F.cross_entropy(head(model(xb)), y_dev[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            train_acc = (head(model(x_dev[:4000])).argmax(1) == y_dev[:4000]).float().mean()
            emb = F.normalize(torch.cat([model(c.to(device)) for c in px.split(1000)]), dim=1)
        scores = (emb[0::2] * emb[1::2]).sum(1).cpu().numpy()
        acc = ten_fold_accuracy(scores, issame)
        print(
            f"difficulty {difficulty:g}: train acc {train_acc:.3f}, final loss {loss.item():.3f}, "
            f"held-out verification acc {acc:.4f} ({len(issame)} pairs), "
            f"render {t_render:.0f}s, total {time.time() - t0:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
