"""Generated IJB-style inputs, and InsightFace's own eval_ijbc.py run on them.

``python tests/_support/ijb_reference.py PATH/TO/eval_ijbc.py`` writes the fixture
``tests/evaluation/ijb_insightface.npz``: the generated image features, faceness scores,
template and media ids and template pairs, and what InsightFace's code computes from them (the
pair scores and its TAR@FAR row). InsightFace's code is not copied: its functions
``image2template_feature`` and ``verification`` and its module-level steps (flip sum, detector
score weighting, the TAR table loop) are taken from the given file with ``ast`` and executed
as they are, with numpy, scikit-learn and stand-ins for matplotlib and prettytable.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parents[1] / "evaluation" / "ijb_insightface.npz"
FARS = [10**-6, 10**-5, 10**-4, 10**-3, 10**-2, 10**-1]


def generate(seed: int = 0, identities: int = 40, dim: int = 16) -> dict[str, np.ndarray]:
    """Image features of 3 templates per identity (1-3 media of 1-3 images each), the flipped
    images' features, faceness scores, and every genuine plus 3000 impostor template pairs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, dim))
    feats, flipped, faceness, templates, medias = [], [], [], [], []
    template_identity = []
    media_id = 0
    for person in range(identities):
        for _ in range(3):
            template = 1000 + len(template_identity)  # ids need not start at 0
            template_identity.append(person)
            for _ in range(rng.integers(1, 4)):
                media_id += 1
                for _ in range(rng.integers(1, 4)):
                    norm = rng.uniform(5, 30)  # feature norms vary, as a CNN's do
                    f = centres[person] + rng.normal(scale=1.1, size=dim)
                    feats.append(norm * f / np.linalg.norm(f))
                    flipped.append(
                        feats[-1] + rng.normal(scale=0.2 * norm / np.sqrt(dim), size=dim)
                    )
                    faceness.append(rng.uniform(0.5, 1.0))
                    templates.append(template)
                    medias.append(media_id)
    ids = np.arange(len(template_identity)) + 1000
    who = np.array(template_identity)
    genuine = [
        (a, b) for i, a in enumerate(ids) for b in ids[i + 1 :] if who[a - 1000] == who[b - 1000]
    ]
    impostor = set()
    while len(impostor) < 3000:
        a, b = rng.choice(ids, 2, replace=False)
        if who[a - 1000] != who[b - 1000]:
            impostor.add((int(min(a, b)), int(max(a, b))))
    pairs = np.array(genuine + sorted(impostor), dtype=np.int64)
    labels = np.array([1] * len(genuine) + [0] * len(impostor), dtype=np.int64)
    order = rng.permutation(len(pairs))
    return {
        "features": np.array(feats, dtype=np.float32),
        "flipped": np.array(flipped, dtype=np.float32),
        "faceness": np.array(faceness, dtype=np.float32),
        "templates": np.array(templates, dtype=np.int64),
        "medias": np.array(medias, dtype=np.int64),
        "pairs": pairs[order],
        "labels": labels[order],
    }


class _Anything:
    """Stands in for matplotlib's pyplot and figures: every attribute is a no-op callable."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: _Anything()


class _Table:
    def __init__(self) -> None:
        self.rows = []

    def add_row(self, row) -> None:
        self.rows.append(row)


def run_insightface(eval_ijbc: str | Path, case: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run InsightFace's own statements from ``eval_ijbc`` on ``case``; returns the pair scores
    and its TAR@FAR row (strings, as its table prints them)."""
    import sklearn
    import sklearn.preprocessing
    from sklearn.metrics import auc, roc_curve

    tree = ast.parse(Path(eval_ijbc).read_text())
    functions = {"image2template_feature", "verification"}
    wanted, steps = [], []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in functions:
            wanted.append(node)
        text = ast.unparse(node)
        if isinstance(node, ast.If) and text.split(":")[0] in (
            "if use_flip_test",
            "if use_norm_score",
            "if use_detector_score",
        ):
            steps.append(node)
        if isinstance(node, ast.For) and text.startswith("for method in methods"):
            table_loop = node
    assert len(wanted) == 2 and len(steps) == 3, "eval_ijbc.py no longer has the expected steps"
    namespace = {
        "np": np,
        "sklearn": sklearn,
        "roc_curve": roc_curve,
        "auc": auc,
        "plt": _Anything(),
        "print": lambda *a, **k: None,
        "use_flip_test": True,
        "use_norm_score": True,
        "use_detector_score": True,
        "img_feats": np.concatenate([case["features"], case["flipped"]], axis=1),
        "faceness_scores": case["faceness"],
    }
    exec(
        compile(ast.Module(body=wanted + steps, type_ignores=[]), str(eval_ijbc), "exec"), namespace
    )
    run = (
        "template_norm_feats, unique_templates = image2template_feature("
        "img_input_feats, templates, medias)\n"
        "score = verification(template_norm_feats, unique_templates, p1, p2)\n"
    )
    namespace.update(templates=case["templates"], medias=case["medias"])
    namespace.update(p1=case["pairs"][:, 0], p2=case["pairs"][:, 1], label=case["labels"])
    exec(run, namespace)
    table = _Table()
    namespace.update(
        methods=np.array(["ijbc"]),
        scores={"ijbc": namespace["score"]},
        colours={"ijbc": None},
        x_labels=FARS,
        tpr_fpr_table=table,
        target="IJBC",
    )
    exec(compile(ast.Module(body=[table_loop], type_ignores=[]), str(eval_ijbc), "exec"), namespace)
    # the row as InsightFace prints it: '%.2f' of TAR in percent
    return {
        "insightface_scores": namespace["score"],
        "insightface_tar_row": np.array(table.rows[0][1:]),
    }


def main() -> None:
    case = generate()
    result = run_insightface(sys.argv[1], case)
    np.savez_compressed(FIXTURE, **case, **result)
    print(f"wrote {FIXTURE}: {len(case['labels'])} pairs, TAR row {result['insightface_tar_row']}")


if __name__ == "__main__":
    main()
