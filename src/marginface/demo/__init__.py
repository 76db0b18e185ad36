"""``marginface demo``: why the margin matters, shown on the embedded synthetic faces.

Trains every listed head (plain softmax, SphereFace, CosFace, ArcFace, ...) with the same small
backbone, data, schedule and seed; evaluates each on identities never seen in training; trains
each again with a 2-D and a 3-D embedding on a few identities (the classic circle / sphere
picture); writes ``report.html``, ``report.md`` and ``metrics.json``.

    from marginface.demo import make_config, run_demo
    outcome = run_demo(make_config(quick=True, output="demo_quick"))
    print(outcome.table)

The names are imported on first use, so that ``marginface.demo.config`` (plain settings, which
``marginface demo --help`` reads for its defaults) is imported without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marginface.lazy import lazy_names

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "DemoConfig": "marginface.demo.config",
    "make_config": "marginface.demo.config",
    "DemoOutcome": "marginface.demo.pipeline",
    "run_demo": "marginface.demo.pipeline",
}

if TYPE_CHECKING:
    from marginface.demo.config import DemoConfig, make_config
    from marginface.demo.pipeline import DemoOutcome, run_demo


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = ["DemoConfig", "DemoOutcome", "make_config", "run_demo"]
