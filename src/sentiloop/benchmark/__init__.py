"""Evidence for the loop: a planted-noise benchmark and scale measurements.

`data` builds the seeded NSMC subset and plants the noise, `metrics` scores labels against
gold, `arms` runs each contender (no correction, cleanlab, sentiloop per schedule, the gold
ceiling), `runner` runs every arm in its own subprocess so that wall time and peak memory are
per arm, and `report` writes the markdown table and the PNG plot. bench/quality.py and
bench/scale.py are the command-line entry points.
"""
