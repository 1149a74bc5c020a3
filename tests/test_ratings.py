"""Ratings for the Compare tab: recovery of known strengths, ties, intervals, ranks, pair choice, figures.

Every simulated data set is seeded, and tolerances are several standard errors wide for the vote counts
used, so these tests are deterministic and still fail if the fit, the tie handling or the bootstrap breaks.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from studio.features.ratings import (
    Leaderboard,
    Vote,
    assign_ranks,
    breakdown,
    fit_bradley_terry,
    head_to_head_figure,
    leaderboard,
    most_uncertain_pair,
    ratings_figure,
    simulate_votes,
    votes_from_ranking,
)

TRUE = {"ember": 1.1, "frost": 0.6, "moss": 0.2, "slate": -0.2, "dune": -0.6, "void": -1.1}


def _votes(outcomes: dict[tuple[str, str, str], int], battle_prefix: str = "b") -> list[Vote]:
    """Explicit votes, each in its own battle: {(a, b, outcome): count}."""
    out, n = [], 0
    for (a, b, outcome), count in outcomes.items():
        for _ in range(count):
            out.append(Vote(f"{battle_prefix}{n}", a, b, outcome))
            n += 1
    return out


@pytest.fixture(scope="module")
def simulated() -> list[Vote]:
    return simulate_votes(TRUE, 6000, n_battles=3000, tie_rate=0.15, per_battle=3, seed=7)


def test_recovers_true_order_and_gaps(simulated):
    names = list(TRUE)
    fitted = fit_bradley_terry(simulated, names)
    truth = np.array([TRUE[n] for n in names])
    assert abs(fitted.mean()) < 1e-9
    assert list(np.argsort(-fitted)) == list(np.argsort(-truth))
    gaps_fit = fitted[:, None] - fitted[None, :]
    gaps_true = truth[:, None] - truth[None, :]
    # ~2000 votes per contender: the standard error of a gap is ~0.06, so 0.2 is > 3 SE.
    assert np.abs(gaps_fit - gaps_true).max() < 0.2


def test_leaderboard_matches_fit_and_counts(simulated):
    board = leaderboard(simulated, rounds=50)
    fitted = dict(zip(sorted(TRUE), fit_bradley_terry(simulated), strict=True))
    assert board.names == sorted(TRUE, key=TRUE.get, reverse=True)
    assert [r.name for r in board.ratings] == board.names
    for r in board.ratings:
        assert r.score == pytest.approx(fitted[r.name])
        assert r.lo < r.score < r.hi
        assert r.wins + r.losses + r.ties == r.votes
        assert not r.provisional
    assert sum(r.votes for r in board.ratings) == 2 * board.n_votes == 2 * len(simulated)
    assert board.n_battles == len({v.battle_id for v in simulated})
    assert board.ratings[0].rank == 1 and board.ratings[-1].rank == len(TRUE)
    h2h = board.head_to_head
    met = board.games > 0
    assert np.allclose((h2h + h2h.T)[met], 1.0)
    assert np.isnan(np.diag(h2h)).all()


def test_intervals_shrink_with_more_votes():
    def mean_width(n: int) -> float:
        votes = simulate_votes(TRUE, n, n_battles=n // 2, tie_rate=0.1, per_battle=3, seed=3)
        board = leaderboard(votes, rounds=100, seed=1)
        return float(np.mean([r.hi - r.lo for r in board.ratings]))

    small, large = mean_width(400), mean_width(4000)
    assert large < small
    assert large < 0.5 * small  # ~1/sqrt(10) in theory


def test_bootstrap_is_reproducible_and_seeded(simulated):
    one = leaderboard(simulated[:800], rounds=40, seed=5)
    two = leaderboard(simulated[:800], rounds=40, seed=5)
    other = leaderboard(simulated[:800], rounds=40, seed=6)
    assert one.to_rows() == two.to_rows()
    assert one.to_rows() != other.to_rows()


def test_tie_counts_as_half_a_win():
    # 10 a-wins + 10 ties is 15:5 on the half-win count, the same strength gap as 15 wins and 5 losses.
    with_ties = fit_bradley_terry(_votes({("x", "y", "a"): 10, ("x", "y", "tie"): 10}))
    decisive = fit_bradley_terry(_votes({("x", "y", "a"): 15, ("x", "y", "b"): 5}))
    assert with_ties == pytest.approx(decisive)
    assert with_ties[0] - with_ties[1] == pytest.approx(math.log(3), abs=0.02)  # ridge pulls it in slightly


def test_both_bad_is_a_tie():
    ties = fit_bradley_terry(_votes({("x", "y", "a"): 7, ("x", "y", "tie"): 9}))
    both_bad = fit_bradley_terry(_votes({("x", "y", "a"): 7, ("x", "y", "both_bad"): 9}))
    assert ties == pytest.approx(both_bad)
    board = leaderboard(_votes({("x", "y", "both_bad"): 4}), rounds=10)
    assert [r.ties for r in board.ratings] == [4, 4]
    assert board.ratings[0].score == pytest.approx(0.0)


def test_undefeated_contender_stays_finite():
    votes = _votes({("champ", "x", "a"): 40, ("y", "champ", "b"): 25,
                    ("x", "y", "a"): 10, ("x", "y", "b"): 12})
    s = fit_bradley_terry(votes, ["champ", "x", "y"])
    assert np.isfinite(s).all()
    assert s[0] > s[1] + 2 and s[0] > s[2] + 2
    board = leaderboard(votes, rounds=30)
    top = board.ratings[0]
    assert top.name == "champ" and top.losses == 0
    assert all(math.isfinite(v) for v in (top.score, top.lo, top.hi))


def test_disconnected_groups_stay_finite_and_centred():
    votes = _votes({("a1", "a2", "a"): 30, ("a1", "a2", "b"): 10, ("b1", "b2", "b"): 20})
    s = fit_bradley_terry(votes, ["a1", "a2", "b1", "b2"])
    assert np.isfinite(s).all()
    assert s[0] + s[1] == pytest.approx(0.0, abs=1e-9)  # each group averages zero
    assert s[0] > s[1] and s[3] > s[2]


def test_provisional_below_min_votes():
    votes = _votes({("x", "y", "a"): 15, ("x", "y", "b"): 10, ("x", "z", "a"): 3, ("z", "y", "tie"): 2})
    board = leaderboard(votes, rounds=30, min_votes=20)
    by = {r.name: r for r in board.ratings}
    assert by["x"].votes == 28 and not by["x"].provisional
    assert by["y"].votes == 27 and not by["y"].provisional
    assert by["z"].votes == 5 and by["z"].provisional and by["z"].rank is None
    assert by["x"].rank is not None and by["y"].rank is not None


def test_rank_rule_on_intervals():
    lo = np.array([2.0, 0.5, 0.4, -1.0, 0.0])
    hi = np.array([3.0, 1.5, 1.0, -0.6, 5.0])
    eligible = np.array([True, True, True, True, False])
    # index 0 clearly above all; 1 and 2 overlap (share rank 2); 3 is below 0, 1 and 2 -> rank 4;
    # 4 is provisional: no rank, and its wide interval does not push anyone down.
    assert assign_ranks(lo, hi, eligible) == [1, 2, 2, 4, None]
    assert assign_ranks(np.array([0.0, 0.1]), np.array([1.0, 1.1]), np.array([True, True])) == [1, 1]
    assert assign_ranks(np.array([np.nan]), np.array([np.nan]), np.array([True])) == [None]


def test_rank_rule_in_leaderboard_separated_vs_overlapping():
    clear = simulate_votes({"top": 2.0, "mid": 0.0, "low": -2.0}, 3000, n_battles=1500, seed=11)
    ranks = {r.name: r.rank for r in leaderboard(clear, rounds=60).ratings}
    assert ranks == {"top": 1, "mid": 2, "low": 3}
    close = simulate_votes({"p": 0.05, "q": 0.0, "r": -0.05}, 300, n_battles=150, seed=12)
    board = leaderboard(close, rounds=60)
    assert [r.rank for r in board.ratings] == [1, 1, 1]  # overlapping intervals share the rank


def test_votes_from_ranking():
    votes = votes_from_ranking("battle-9", ["a", "b", "c", "d"], "c", prompt_set="heroes", prompt="a knight")
    assert [(v.a, v.b, v.outcome) for v in votes] == [("c", "a", "a"), ("c", "b", "a"), ("c", "d", "a")]
    assert {v.battle_id for v in votes} == {"battle-9"}
    assert all(v.prompt_set == "heroes" and v.prompt == "a knight" for v in votes)
    board = leaderboard(votes, rounds=5, min_votes=1)
    assert board.ratings[0].name == "c" and board.ratings[0].wins == 3
    assert all(r.votes == 1 and r.losses == 1 for r in board.ratings[1:])
    with pytest.raises(ValueError, match="not among"):
        votes_from_ranking("x", ["a", "b"], "z")
    with pytest.raises(ValueError, match="at least two"):
        votes_from_ranking("x", ["a"], "a")
    with pytest.raises(ValueError, match="repeat"):
        votes_from_ranking("x", ["a", "a", "b"], "a")


def test_breakdown_by_prompt_set():
    heroes = simulate_votes({"pix": 1.0, "sdxl": -1.0}, 600, n_battles=300, seed=1, prompt_sets=["heroes"])
    tiles = simulate_votes({"pix": -1.0, "sdxl": 1.0}, 400, n_battles=200, seed=2, prompt_sets=["tiles"])
    tiles = [Vote("t" + v.battle_id, v.a, v.b, v.outcome, v.prompt_set) for v in tiles]
    loose = [Vote("loose", "pix", "sdxl", "a")]
    parts = breakdown(heroes + tiles + loose, by="prompt_set", rounds=20)
    assert sorted(parts) == ["heroes", "tiles"]
    assert isinstance(parts["heroes"], Leaderboard)
    assert parts["heroes"].names == ["pix", "sdxl"]
    assert parts["tiles"].names == ["sdxl", "pix"]
    assert parts["heroes"].n_votes == 600 and parts["tiles"].n_votes == 400
    with pytest.raises(ValueError, match="prompt_set"):
        breakdown(heroes, by="seed")


def test_breakdown_by_prompt():
    votes = [Vote("1", "a", "b", "a", prompt="cat"), Vote("2", "a", "b", "b", prompt="dog"),
             Vote("3", "a", "b", "a", prompt="cat")]
    parts = breakdown(votes, by="prompt", rounds=5)
    assert {k: v.n_votes for k, v in parts.items()} == {"cat": 2, "dog": 1}


def test_most_uncertain_pair_prefers_close_pair():
    names = ["near1", "near2", "far_up", "far_down"]
    votes = simulate_votes({"near1": 0.05, "near2": 0.0, "far_up": 2.5, "far_down": -2.5}, 2400,
                           n_battles=1200, seed=4)
    for seed in range(5):
        assert set(most_uncertain_pair(votes, names, rng=seed)) == {"near1", "near2"}


def test_most_uncertain_pair_prefers_untested_close_pair_over_settled_one():
    # a vs b: 60:40 after 1000 votes (settled); c vs d: 2:1 after only 3 direct votes, with the rest of
    # what we know about them coming indirectly through a and b (each beat its partner 3:1 over 400 votes).
    votes = _votes({("a", "b", "a"): 600, ("a", "b", "b"): 400, ("c", "d", "a"): 2, ("c", "d", "b"): 1,
                    ("a", "c", "a"): 300, ("c", "a", "a"): 100, ("b", "d", "a"): 300, ("d", "b", "a"): 100})
    assert set(most_uncertain_pair(votes, ["a", "b", "c", "d"], rng=0)) == {"c", "d"}


def test_most_uncertain_pair_without_votes_is_random():
    names = ["a", "b", "c", "d", "e"]
    picks = {frozenset(most_uncertain_pair([], names, rng=seed)) for seed in range(40)}
    assert all(len(p) == 2 and p <= set(names) for p in picks)
    assert len(picks) > 3
    with pytest.raises(ValueError, match="two contenders"):
        most_uncertain_pair([], ["solo"])


def test_empty_votes_give_neutral_board():
    board = leaderboard([])
    assert board.ratings == [] and board.names == [] and board.n_votes == 0 and board.n_battles == 0
    assert board.head_to_head.shape == (0, 0)
    assert board.to_rows() == []
    assert fit_bradley_terry([]).shape == (0,)
    named = leaderboard([], names=["a", "b"])
    assert [r.score for r in named.ratings] == [0.0, 0.0]
    assert all(r.provisional and r.rank is None and math.isnan(r.lo) for r in named.ratings)
    ratings_figure(named)
    head_to_head_figure(board)


def test_bad_outcome_raises_clear_error():
    with pytest.raises(ValueError, match=r"outcome 'left' is not one of 'a', 'b', 'tie', 'both_bad'"):
        Vote("b1", "x", "y", "left")
    with pytest.raises(ValueError, match="outcome 'A'"):
        leaderboard([{"battle_id": "b1", "a": "x", "b": "y", "outcome": "A"}])
    with pytest.raises(ValueError, match="cannot face itself"):
        Vote("b1", "x", "x", "a")
    with pytest.raises(ValueError, match="not in names"):
        fit_bradley_terry([Vote("b1", "x", "y", "a")], names=["x"])


def test_plain_records_accepted():
    rows = [{"battle_id": "1", "a": "x", "b": "y", "outcome": "a", "prompt_set": "s", "prompt": "p"}] * 3
    board = leaderboard(rows, rounds=5, min_votes=1)
    assert board.ratings[0].name == "x" and board.ratings[0].wins == 3


def test_to_rows_is_json_ready(simulated):
    board = leaderboard(simulated[:300], rounds=20, names=[*TRUE, "newcomer"])
    rows = board.to_rows()
    text = json.dumps(rows, allow_nan=False)
    assert "newcomer" in text
    row = next(r for r in rows if r["name"] == "ember")
    assert set(row) >= {"rank", "name", "score", "lo", "hi", "elo", "votes", "wins", "losses", "ties", "provisional"}
    assert row["elo"] == pytest.approx(1000 + 400 / math.log(10) * row["score"], abs=1e-3)
    newcomer = next(r for r in rows if r["name"] == "newcomer")
    assert newcomer["lo"] is None and newcomer["rank"] is None and newcomer["votes"] == 0


def test_win_probability(simulated):
    board = leaderboard(simulated, rounds=10)
    p = board.win_probability("ember", "void")
    assert p == pytest.approx(1 / (1 + math.exp(-2.2)), abs=0.03)
    assert board.win_probability("void", "ember") == pytest.approx(1 - p)


def test_figures_contain_names(simulated):
    newcomer = _votes({("newcomer", "ember", "a"): 2, ("void", "newcomer", "tie"): 1}, battle_prefix="n")
    board = leaderboard(simulated[:500] + newcomer, rounds=20, min_votes=20)
    fig = ratings_figure(board)
    shown = {x for trace in fig.data for x in trace.x}
    assert shown == {*TRUE, "newcomer"}
    by_trace = {trace.name: set(trace.x) for trace in fig.data}
    assert by_trace == {"rated": set(TRUE), "provisional": {"newcomer"}}
    assert fig.data[0].error_y.array is not None
    heat = head_to_head_figure(board)
    assert list(heat.data[0].x) == board.names and list(heat.data[0].y) == board.names
    assert all(name in heat.to_json() for name in [*TRUE, "newcomer"])
