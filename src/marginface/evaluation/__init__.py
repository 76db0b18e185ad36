"""Evaluation the way face-recognition papers report it.

* :func:`verification_metrics` (``metrics``): LFW-style 10-fold accuracy, AUC, EER, TAR@FAR.
* :func:`embed_dataset`, :func:`evaluate_pairs` (``embed``): flip-test embeddings and pair
  metrics, embedded as an :class:`EmbedOptions` says (batch size, flip, device, workers,
  progress).
* ``identification``: rank-1 / rank-5 and CMC.
* ``config``: :class:`~marginface.evaluation.config.EvalConfig`, what ``marginface eval``
  evaluates; ``evaluate``: the run; ``run_report``: its metrics.json and report; ``folds``:
  the accuracy's folds and their warnings.
* ``report``: a generic Markdown + self-contained HTML report builder; ``plots``: ROC,
  score histograms, CMC.

Using a model (embedding files, verify, search, ONNX export, importing) is
:mod:`marginface.inference`'s.
"""

from marginface.evaluation.embed import EmbedOptions, embed_dataset, evaluate_pairs, pair_scores
from marginface.evaluation.identification import evaluate_identification, identification_metrics
from marginface.evaluation.metrics import verification_metrics

__all__ = [
    "EmbedOptions",
    "embed_dataset",
    "evaluate_identification",
    "evaluate_pairs",
    "identification_metrics",
    "pair_scores",
    "verification_metrics",
]
