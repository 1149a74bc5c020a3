"""Benchmarks as a studio feature: suites measured on this box, through the studio's own code, stored in DuckDB.

`run.py` is the feature (the `bench` job kind, the `benchmarks` table); `measure.py` the run's scratch studio and
helpers; `suites.py` what each benchmark measures; `context.py` what makes two figures comparable. The CLI
(`dgx-pixels bench`), the Metrics tab and the scripts in the repository's bench folder all run these.
"""
