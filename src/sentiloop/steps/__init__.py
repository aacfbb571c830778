"""One module per DVC stage, each with functions over (settings, layout[, k][, member]).

The stage scripts (stages/*.py), the in-process driver (sentiloop.pipeline.run_loop) and the
benchmark's loop arm call these same functions, so what a test or a benchmark measures is what
`dvc repro` runs. Each module imports only what its stage needs: its import closure is what
dvc.yaml declares as the stage's code deps (tests/test_dag.py checks both ways).
"""
