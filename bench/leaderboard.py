"""Leaderboard speed: 100,000 simulated Compare-tab votes, 200 battle-bootstrap rounds, one core.

    .venv/bin/python bench/leaderboard.py                       # defaults: 100k votes, 10 contenders
    .venv/bin/python bench/leaderboard.py --votes 20000 --runs 5

The budget is 2 s for `leaderboard(votes, rounds=200)` (encoding the vote records included), so the
Compare tab can refresh its table after every vote. Votes are simulated from known Bradley–Terry strengths
(3 contenders per battle, 10% ties), so the run also shows whether the fit recovers the true order.
The time reported is the median of --runs runs after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # "one core": keep BLAS from spreading the batched solves
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from studio.features.ratings import leaderboard, simulate_votes  # noqa: E402

BUDGET_S = 2.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--votes", type=int, default=100_000)
    ap.add_argument("--battles", type=int, default=40_000)
    ap.add_argument("--contenders", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    true = {f"contender-{i:02d}": float(s) for i, s in enumerate(np.linspace(-1.2, 1.2, args.contenders))}
    t0 = time.perf_counter()
    votes = simulate_votes(true, args.votes, n_battles=args.battles, tie_rate=0.1, per_battle=3, seed=args.seed)
    print(f"simulated {len(votes):,} votes over {len({v.battle_id for v in votes}):,} battles "
          f"and {len(true)} contenders in {time.perf_counter() - t0:.2f} s")

    leaderboard(votes, rounds=args.rounds, seed=args.seed)  # warm-up: imports, allocator, caches
    times, board = [], None
    for run in range(args.runs):
        t0 = time.perf_counter()
        board = leaderboard(votes, rounds=args.rounds, seed=args.seed + run)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    verdict = "under" if median < BUDGET_S else "OVER"
    print(f"leaderboard(rounds={args.rounds}): median {median:.3f} s of {args.runs} runs "
          f"({', '.join(f'{t:.3f}' for t in times)}) -> {verdict} the {BUDGET_S:.0f} s budget")

    true_order = sorted(true, key=true.get, reverse=True)
    print(f"order recovered: {board.names == true_order}")
    print(f"{'rank':>4}  {'contender':14} {'true':>6} {'fitted':>7} {'95% interval':>17} {'votes':>7}")
    for r in board.ratings:
        print(f"{r.rank if r.rank is not None else '-':>4}  {r.name:14} {true[r.name]:6.2f} {r.score:7.3f} "
              f"[{r.lo:6.3f}, {r.hi:6.3f}] {r.votes:7d}")
    return 0 if median < BUDGET_S and board.names == true_order else 1


if __name__ == "__main__":
    sys.exit(main())
