"""Helpers shared by the tests, imported one way: ``from _support.NAME import ...``.

``tests/`` is on ``sys.path`` for every test (pyproject.toml: ``[tool.pytest.ini_options]
pythonpath``). Fixtures stay in the ``conftest.py`` files; plain functions, constants and the
scripts that tests start as processes live here:

- ``launch``: the one multi-process launcher (N local ranks with torchrun's environment);
- ``training``: tiny ``marginface train`` arguments, log readers, a 2-rank training run;
- ``train_worker`` / ``pfc_worker``: the scripts one rank runs (training; Partial FC cases);
- ``heads`` / ``heads_reference``: generic head checks and the heads' formulas by hand;
- ``ijb_reference``: InsightFace's IJB evaluation, replayed for the parity fixture;
- ``fuzz_targets`` / ``fuzz_seeds``: the fuzzing targets and their seed inputs;
- ``threads``: torch on one thread inside a block.
"""
