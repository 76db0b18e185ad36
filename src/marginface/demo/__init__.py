"""``marginface demo``: why the margin matters, shown on the embedded synthetic faces.

Trains every listed head (plain softmax, SphereFace, CosFace, ArcFace, ...) with the same small
backbone, data, schedule and seed; evaluates each on identities never seen in training; trains
each again with a 2-D and a 3-D embedding on a few identities (the classic circle / sphere
picture); writes ``report.html``, ``report.md`` and ``metrics.json``.

    from marginface.demo import make_config, run_demo
    outcome = run_demo(make_config(quick=True, output="demo_quick"))
    print(outcome.table)
"""

from marginface.demo.config import DemoConfig, make_config
from marginface.demo.pipeline import DemoOutcome, run_demo

__all__ = ["DemoConfig", "DemoOutcome", "make_config", "run_demo"]
