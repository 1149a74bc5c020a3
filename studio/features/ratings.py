"""Compare-tab ratings: Bradley–Terry strengths from human votes, with battle-bootstrap intervals.

Why Bradley–Terry fitted by maximum likelihood rather than online Elo: an Elo table depends on the order
votes arrived in and on a K-factor; the BT fit depends only on the counts, and its numbers have a direct
reading, P(i beats j) = 1 / (1 + exp(-(s_i - s_j))).

Scale. `Rating.score` is the natural-log strength s_i, centred so the contenders average 0 (each connected
group of the comparison graph averages 0; scores in different groups are not comparable). A gap of 1.0
means the better contender is preferred about 73% of the time. `Rating.elo` is the same number on the
familiar chess scale, 1000 + 400/ln(10) * score (a 400-point gap is 10:1 odds).

Ties. "tie" and "both_bad" each count as half a win for both sides: neither image was preferred, which is
evidence the two are close. (The model keeps no separate tie parameter; the half-win fit is consistent for
the strengths whenever ties do not favour either side.)

Prior. The fit maximises log-likelihood - ridge/2 * sum(s^2), a Gaussian prior with sd 1/sqrt(ridge)
(10 log-strength units at the default ridge of 0.01). That makes the problem strictly concave, so an
undefeated contender or a group never compared with the rest gets a finite score, and with no votes every
score is exactly 0. Next to a few dozen votes its pull is negligible.

Intervals. Votes in one battle share the same images (and usually the same voter), so they are not
independent. The 95% interval is a percentile bootstrap over battles: battle ids are resampled with
replacement and the model refitted; a contender's interval is the 2.5..97.5 percentile of its refitted
scores. Contenders with no votes have no interval (NaN).

Rank rule. A contender with fewer than `min_votes` votes is provisional and gets rank None. Every other
contender's rank is 1 + the number of non-provisional contenders whose interval lies entirely above its own
(their lower bound > its upper bound). Contenders whose intervals overlap therefore share a rank, and rank k
says "k - 1 contenders are clearly better", never more than the data shows.

Speed. Votes are encoded to integers once and summed into per-battle win counts with bincount. A bootstrap
round is then a weighted sum of those counts (weights = how often each battle was drawn) and all rounds are
fitted together by one batched, warm-started Newton solve on K x K matrices, so nothing loops per vote.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit

OUTCOMES: tuple[str, ...] = ("a", "b", "tie", "both_bad")
RIDGE = 0.01
ELO_BASE = 1000.0
ELO_PER_LOG = 400.0 / math.log(10.0)
BREAKDOWN_FIELDS = ("prompt_set", "prompt")

_OUTCOME_CODE = {name: code for code, name in enumerate(OUTCOMES)}


@dataclass(frozen=True)
class Vote:
    """One human judgement between two contenders shown in one battle (same prompt + seed)."""

    battle_id: str
    a: str
    b: str
    outcome: str  # "a" | "b" | "tie" | "both_bad"
    prompt_set: str | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        # Fail where the bad record is made, not deep inside a fit, so the message can name it.
        if self.outcome not in _OUTCOME_CODE:
            raise ValueError(
                f"vote in battle {self.battle_id!r}: outcome {self.outcome!r} is not one of "
                f"{', '.join(repr(o) for o in OUTCOMES)}"
            )
        if self.a == self.b:
            raise ValueError(f"vote in battle {self.battle_id!r}: a contender cannot face itself ({self.a!r})")


def votes_from_ranking(battle_id: str, contenders: Sequence[str], best: str, **kw: Any) -> list[Vote]:
    """Turn a "pick the best of N" answer into pairwise votes: best beats each other contender.

    The others stay unranked among themselves, because the voter only told us which one was best.
    Extra keywords (prompt_set, prompt) are copied onto every vote.
    """
    if len(set(contenders)) != len(contenders):
        raise ValueError(f"battle {battle_id!r}: contenders repeat: {list(contenders)}")
    if len(contenders) < 2:
        raise ValueError(f"battle {battle_id!r}: a ranking needs at least two contenders")
    if best not in contenders:
        raise ValueError(f"battle {battle_id!r}: best {best!r} is not among the contenders {list(contenders)}")
    return [Vote(battle_id, best, other, "a", **kw) for other in contenders if other != best]


@dataclass(frozen=True)
class Rating:
    """One contender's line on the leaderboard; score/lo/hi are log-strengths (see the module docstring)."""

    name: str
    score: float
    lo: float
    hi: float
    votes: int
    wins: int
    losses: int
    ties: int  # "tie" and "both_bad" together
    provisional: bool
    rank: int | None

    @property
    def elo(self) -> float:
        return to_elo(self.score)

    @property
    def elo_lo(self) -> float:
        return to_elo(self.lo)

    @property
    def elo_hi(self) -> float:
        return to_elo(self.hi)


@dataclass(frozen=True)
class Leaderboard:
    """Ratings best first, plus who-beat-whom. `names`, `head_to_head` and `games` share one order."""

    ratings: list[Rating]
    names: list[str]
    head_to_head: np.ndarray = field(compare=False, repr=False)  # row's win rate vs column (ties = 1/2)
    games: np.ndarray = field(compare=False, repr=False)  # votes between row and column
    n_votes: int = 0
    n_battles: int = 0
    rounds: int = 0

    def rating(self, name: str) -> Rating:
        for r in self.ratings:
            if r.name == name:
                return r
        raise KeyError(f"no contender {name!r} on this leaderboard")

    def win_probability(self, a: str, b: str) -> float:
        """The model's chance that `a` is preferred to `b` (smoother than the raw head-to-head rate)."""
        return float(expit(self.rating(a).score - self.rating(b).score))

    def to_rows(self) -> list[dict[str, Any]]:
        """Plain dicts for CSV/JSON; NaN becomes None so `json.dumps` writes valid JSON."""
        rows = []
        for r in self.ratings:
            rows.append({
                "rank": r.rank, "name": r.name,
                "score": _num(r.score), "lo": _num(r.lo), "hi": _num(r.hi),
                "elo": _num(r.elo), "elo_lo": _num(r.elo_lo), "elo_hi": _num(r.elo_hi),
                "votes": r.votes, "wins": r.wins, "losses": r.losses, "ties": r.ties,
                "provisional": r.provisional,
            })
        return rows


def to_elo(score: float) -> float:
    """Log-strength to the chess-like scale used in the UI."""
    return ELO_BASE + ELO_PER_LOG * score


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


# ---------------------------------------------------------------------------------------------------
# Encoding: votes -> integer arrays, once.


@dataclass(frozen=True)
class _Encoded:
    names: list[str]
    battle: np.ndarray  # per vote: battle index
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray  # per vote: index into OUTCOMES
    n_battles: int


def _as_vote(record: Vote | Mapping[str, Any]) -> Vote:
    """Accept Vote objects or plain mappings (e.g. DuckDB rows as dicts)."""
    return record if isinstance(record, Vote) else Vote(**record)


def _encode(votes: Iterable[Vote | Mapping[str, Any]], names: Sequence[str] | None = None) -> _Encoded:
    """One pass over the records; every later step works on the integer arrays."""
    votes = [_as_vote(v) for v in votes]
    if names is None:
        names = sorted({v.a for v in votes} | {v.b for v in votes})
    names = list(names)
    index = {n: i for i, n in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"contender names repeat: {names}")
    unknown = sorted(({v.a for v in votes} | {v.b for v in votes}) - index.keys())
    if unknown:
        raise ValueError(f"votes mention contenders not in names: {unknown}")
    battles: dict[Any, int] = {}
    battle = np.fromiter((battles.setdefault(v.battle_id, len(battles)) for v in votes), np.int64, len(votes))
    a = np.fromiter((index[v.a] for v in votes), np.int64, len(votes))
    b = np.fromiter((index[v.b] for v in votes), np.int64, len(votes))
    try:
        outcome = np.fromiter((_OUTCOME_CODE[v.outcome] for v in votes), np.int64, len(votes))
    except KeyError as exc:
        raise ValueError(f"outcome {exc.args[0]!r} is not one of {', '.join(map(repr, OUTCOMES))}") from None
    return _Encoded(names, battle, a, b, outcome, len(battles))


def _cells(enc: _Encoded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vote index, flat cell winner*K+loser, credit) for every unit of credit: a win gives 1, a tie 1/2 each way."""
    k = len(enc.names)
    decisive = enc.outcome <= 1
    winner = np.where(enc.outcome == 1, enc.b, enc.a)
    loser = np.where(enc.outcome == 1, enc.a, enc.b)
    tied = np.flatnonzero(~decisive)
    won = np.flatnonzero(decisive)
    vote = np.concatenate([won, tied, tied])
    cell = np.concatenate([
        winner[won] * k + loser[won],
        enc.a[tied] * k + enc.b[tied],
        enc.b[tied] * k + enc.a[tied],
    ])
    credit = np.concatenate([np.ones(len(won)), np.full(2 * len(tied), 0.5)])
    return vote, cell, credit


@dataclass(frozen=True)
class _BattleCounts:
    """Sparse per-battle win counts: entry e adds credit[e] to cell[e] of battle[e]'s K x K matrix."""

    battle: np.ndarray
    cell: np.ndarray
    credit: np.ndarray
    k: int
    n_battles: int

    def total(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Win matrix W[i, j] = credit of i over j, summed over battles with the given weights."""
        credit = self.credit if weights is None else self.credit * weights[self.battle]
        return np.bincount(self.cell, credit, minlength=self.k * self.k).reshape(self.k, self.k)


def _battle_counts(enc: _Encoded) -> _BattleCounts:
    """Merge the credit of repeated (battle, cell) pairs so bootstrap rounds touch each pair once."""
    k = len(enc.names)
    vote, cell, credit = _cells(enc)
    key = enc.battle[vote] * (k * k) + cell
    uniq, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse, credit, minlength=len(uniq))
    return _BattleCounts(uniq // (k * k), uniq % (k * k), summed, k, enc.n_battles)


# ---------------------------------------------------------------------------------------------------
# Fitting.


def _objective(wins: np.ndarray, s: np.ndarray, ridge: float) -> np.ndarray:
    """Penalised log-likelihood; wins (..., K, K), s (..., K) -> (...)."""
    diff = s[..., :, None] - s[..., None, :]
    return -(wins * np.logaddexp(0.0, -diff)).sum(axis=(-2, -1)) - 0.5 * ridge * (s * s).sum(-1)


def _newton(wins: np.ndarray, s0: np.ndarray | None, ridge: float, max_iter: int = 100) -> np.ndarray:
    """Batched damped Newton ascent for (B, K, K) win matrices; returns (B, K) mean-zero strengths.

    The penalised objective is strictly concave, so Newton with an Armijo backtracking line search
    converges from anywhere; warm-started from the full-data fit, bootstrap rounds need 2-4 steps.
    It stops when the Newton decrement g' H^-1 g (twice the remaining gain) is below 1e-14 everywhere.
    """
    b, k, _ = wins.shape
    games = wins + np.swapaxes(wins, -1, -2)
    s = np.zeros((b, k)) if s0 is None else np.broadcast_to(s0, (b, k)).astype(float)
    eye = np.eye(k, dtype=bool)
    current = _objective(wins, s, ridge)
    for _ in range(max_iter):
        p = expit(s[:, :, None] - s[:, None, :])
        grad = (wins - games * p).sum(-1) - ridge * s
        curv = games * p * (1.0 - p)
        neg_hess = -curv
        neg_hess[:, eye] = curv.sum(-1) + ridge
        d = np.linalg.solve(neg_hess, grad[..., None])[..., 0]
        slope = (grad * d).sum(-1)
        if slope.max(initial=0.0) < 1e-14:
            break
        t, current = _line_search(wins, s, d, slope, current, ridge)
        s = s + t[:, None] * d
    return s - s.mean(-1, keepdims=True)


def _line_search(
    wins: np.ndarray, s: np.ndarray, d: np.ndarray, slope: np.ndarray, current: np.ndarray, ridge: float
) -> tuple[np.ndarray, np.ndarray]:
    """Armijo step sizes per batch member: the full Newton step where it is good enough (almost always),
    halvings only for the members where it is not. Returns (steps, new objective values)."""
    noise = 1e-12 * (1.0 + np.abs(current))  # float rounding in a sum of ~1e5 terms is not a failure
    value = _objective(wins, s + d, ridge)
    t = np.ones(len(s))
    bad = np.flatnonzero(value < current + 1e-4 * slope - noise)
    if bad.size:
        steps = 0.5 ** np.arange(1, 30)
        trial = s[bad, None, :] + steps[None, :, None] * d[bad, None, :]
        tried = _objective(wins[bad, None], trial, ridge)
        ok = tried >= current[bad, None] + 1e-4 * steps * slope[bad, None] - noise[bad, None]
        first = np.argmax(ok, axis=1)
        found = ok.any(axis=1)
        t[bad] = np.where(found, steps[first], 0.0)
        value[bad] = np.where(found, tried[np.arange(bad.size), first], current[bad])
    return t, value


def _fit_matrix(wins: np.ndarray, ridge: float = RIDGE, s0: np.ndarray | None = None) -> np.ndarray:
    """Strengths for one K x K win matrix, or a batch (B, K, K)."""
    if wins.shape[-1] == 0:
        return np.zeros(wins.shape[:-1])
    batch = wins.reshape(-1, *wins.shape[-2:])
    return _newton(batch, s0, ridge).reshape(wins.shape[:-1])


def fit_bradley_terry(
    votes: Iterable[Vote | Mapping[str, Any]], names: Sequence[str] | None = None, ridge: float = RIDGE
) -> np.ndarray:
    """MLE log-strengths (mean zero) in the order of `names` (default: sorted contender names).

    Ties and "both_bad" are half a win each way; `ridge` is the Gaussian prior described in the module
    docstring, which keeps undefeated or disconnected contenders finite.
    """
    enc = _encode(votes, names)
    return _fit_matrix(_battle_counts(enc).total(), ridge)


# ---------------------------------------------------------------------------------------------------
# Leaderboard.


def _tallies(enc: _Encoded) -> dict[str, np.ndarray]:
    """Per contender: votes, wins, losses, ties (ties include both_bad)."""
    k = len(enc.names)
    decisive = enc.outcome <= 1
    winner = np.where(enc.outcome == 1, enc.b, enc.a)[decisive]
    loser = np.where(enc.outcome == 1, enc.a, enc.b)[decisive]
    tied = np.concatenate([enc.a[~decisive], enc.b[~decisive]])
    return {
        "votes": np.bincount(np.concatenate([enc.a, enc.b]), minlength=k),
        "wins": np.bincount(winner, minlength=k),
        "losses": np.bincount(loser, minlength=k),
        "ties": np.bincount(tied, minlength=k),
    }


def _bootstrap(counts: _BattleCounts, s0: np.ndarray, rounds: int, seed: int, ridge: float) -> np.ndarray:
    """(rounds, K) strengths refitted on battles resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = counts.n_battles
    stack = np.empty((rounds, counts.k, counts.k))
    for r in range(rounds):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        stack[r] = counts.total(weights)
    return _fit_matrix(stack, ridge, s0)


def assign_ranks(lo: np.ndarray, hi: np.ndarray, eligible: np.ndarray) -> list[int | None]:
    """Rank = 1 + number of eligible contenders whose lower bound is above this one's upper bound.

    Overlapping intervals share a rank; ineligible (provisional or interval-less) contenders get None.
    """
    ranks: list[int | None] = []
    ok = eligible & np.isfinite(lo) & np.isfinite(hi)
    for i in range(len(lo)):
        ranks.append(int(1 + np.sum(ok & (lo > hi[i]))) if ok[i] else None)
    return ranks


def _head_to_head(wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    games = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(games > 0, wins / games, np.nan)
    return rate, games


def leaderboard(
    votes: Iterable[Vote | Mapping[str, Any]],
    rounds: int = 200,
    seed: int = 0,
    min_votes: int = 20,
    names: Sequence[str] | None = None,
    ridge: float = RIDGE,
) -> Leaderboard:
    """The Compare tab's table: BT scores, battle-bootstrap 95% intervals, provisional flags, ranks.

    `names` adds contenders that have no votes yet (they show as provisional with score 0, no interval).
    `rounds=0` skips the bootstrap: no intervals and therefore no ranks.
    """
    enc = _encode(votes, names)
    k = len(enc.names)
    counts = _battle_counts(enc)
    wins = counts.total()
    score = _fit_matrix(wins, ridge)
    tally = _tallies(enc)
    lo = hi = np.full(k, np.nan)
    if rounds > 0 and enc.n_battles > 0:
        boot = _bootstrap(counts, score, rounds, seed, ridge)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        seen = tally["votes"] > 0
        lo, hi = np.where(seen, lo, np.nan), np.where(seen, hi, np.nan)
    provisional = tally["votes"] < min_votes
    ranks = assign_ranks(lo, hi, ~provisional)
    ratings = [
        Rating(enc.names[i], float(score[i]), float(lo[i]), float(hi[i]), int(tally["votes"][i]),
               int(tally["wins"][i]), int(tally["losses"][i]), int(tally["ties"][i]), bool(provisional[i]),
               ranks[i])
        for i in range(k)
    ]
    order = sorted(range(k), key=lambda i: (-score[i], enc.names[i]))
    rate, games = _head_to_head(wins)
    return Leaderboard(
        ratings=[ratings[i] for i in order],
        names=[enc.names[i] for i in order],
        head_to_head=rate[np.ix_(order, order)],
        games=games[np.ix_(order, order)],
        n_votes=len(enc.battle),
        n_battles=enc.n_battles,
        rounds=rounds if enc.n_battles > 0 else 0,
    )


def breakdown(votes: Iterable[Vote | Mapping[str, Any]], by: str, **kw: Any) -> dict[str, Leaderboard]:
    """One leaderboard per prompt set (or per prompt), to see where a contender wins or loses.

    Votes without a value for `by` are left out here (they still count on the overall board).
    Keywords go to `leaderboard` (rounds, seed, min_votes, ...).
    """
    if by not in BREAKDOWN_FIELDS:
        raise ValueError(f"breakdown by {by!r}: choose one of {', '.join(map(repr, BREAKDOWN_FIELDS))}")
    groups: dict[str, list[Vote]] = {}
    for v in map(_as_vote, votes):
        key = getattr(v, by)
        if key is not None:
            groups.setdefault(key, []).append(v)
    return {key: leaderboard(groups[key], **kw) for key in sorted(groups)}


# ---------------------------------------------------------------------------------------------------
# "Surprise me": which pair to show next.


def _order_z(votes: list[Vote], names: list[str], ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """|s_i - s_j| / sd(s_i - s_j) for every pair, sd from the inverse Fisher information of the fit.

    The inverse information combines direct and indirect evidence (a vs c via b) and costs one K x K
    inverse, so the UI can call this on every click without a bootstrap.
    """
    enc = _encode(votes, names)
    wins = _battle_counts(enc).total()
    s = _fit_matrix(wins, ridge)
    games = wins + wins.T
    p = expit(s[:, None] - s[None, :])
    curv = games * p * (1.0 - p)
    info = np.diag(curv.sum(1) + ridge) - curv
    cov = np.linalg.inv(info)
    var = np.diag(cov)[:, None] + np.diag(cov)[None, :] - 2.0 * cov
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(s[:, None] - s[None, :]) / np.sqrt(np.maximum(var, 1e-300))
    return z, games


def most_uncertain_pair(
    votes: Iterable[Vote | Mapping[str, Any]],
    names: Sequence[str],
    rng: np.random.Generator | int | None = None,
    ridge: float = RIDGE,
) -> tuple[str, str]:
    """The pair among `names` whose order the votes settle least: smallest |gap| / standard error.

    A close pair with few votes between them wins over a pair that is clearly ordered; near-equal
    candidates are split by fewer head-to-head votes, then at random. With no votes every pair is
    equally unknown, so the pick is a random pair. Votes about contenders outside `names` still inform
    the fit (indirect evidence) but are never proposed.
    """
    names = list(dict.fromkeys(names))
    if len(names) < 2:
        raise ValueError(f"need at least two contenders to pick a pair, got {names}")
    rng = np.random.default_rng(rng)
    votes = [_as_vote(v) for v in votes]
    everyone = names + sorted(({v.a for v in votes} | {v.b for v in votes}) - set(names))
    z, games = _order_z(votes, everyone, ridge)
    i, j = np.triu_indices(len(names), k=1)
    zs, gs = np.round(z[i, j], 9), games[i, j]
    best = np.flatnonzero(zs == zs.min())
    best = best[gs[best] == gs[best].min()]
    pick = int(rng.choice(best))
    first, second = names[i[pick]], names[j[pick]]
    return (first, second) if rng.random() < 0.5 else (second, first)


# ---------------------------------------------------------------------------------------------------
# For people: the table, the one-line reasons and the figures (plotly is imported here so the fit stays
# importable without it). Numbers are rounded as people read them: whole Elo points, win rates in percent.


def _none_nan(values: Iterable[float]) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values]


def win_rate(r: Rating) -> float | None:
    """Share of its votes a contender won, a tie or 'both bad' counting half; None with no votes."""
    return (r.wins + r.ties / 2) / r.votes if r.votes else None


def _all_overlap(board: Leaderboard) -> bool:
    """True when two or more contenders are ranked and every interval overlaps: nobody is clearly better."""
    ranked = [r for r in board.ratings if r.rank is not None]
    return len(ranked) > 1 and all(r.rank == 1 for r in ranked)


BOARD_COLUMNS = ("rank", "contender", "Elo", "95% interval", "win rate", "votes", "won / lost / tied", "status")


def people_rows(board: Leaderboard, min_votes: int = 20) -> list[dict[str, str | int]]:
    """The leaderboard as people read it: rank ('—' when the votes do not rank it yet), Elo as a whole number,
    its 95% interval as '1093–1180', the win rate in percent, and a status in words."""
    overlap = _all_overlap(board)
    shared = {}
    for r in board.ratings:
        if r.rank is not None:
            shared[r.rank] = shared.get(r.rank, 0) + 1
    rows = []
    for r in board.ratings:
        if r.rank is None or overlap:
            rank = "—"
        else:
            rank = f"{r.rank} (shared)" if shared[r.rank] > 1 else str(r.rank)
        interval = (f"{r.elo_lo:.0f}–{r.elo_hi:.0f}" if math.isfinite(r.lo) and math.isfinite(r.hi) else "—")
        rate = win_rate(r)
        more = max(min_votes - r.votes, 0)
        status = (f"provisional: {more} more vote{'s' if more != 1 else ''} to rank" if r.provisional
                  else "ranked")
        rows.append(dict(zip(BOARD_COLUMNS, (
            rank, r.name, f"{r.elo:.0f}" if r.votes else "—", interval, f"{rate:.0%}" if rate is not None else "—",
            r.votes, f"{r.wins} / {r.losses} / {r.ties}", status), strict=True)))
    return rows


def board_note(board: Leaderboard, min_votes: int = 20) -> str:
    """What the leaderboard says, or what to do while it is empty; one line per reason (Markdown)."""
    if len(board.ratings) < 2 and board.n_votes == 0:
        return "Save two contenders and vote on a few battles: the leaderboard appears here."
    if board.n_votes == 0:
        return ("No votes yet. Run a battle and vote on it (keys 1, 2, t, x): the leaderboard appears here.")
    lines = [f"**{board.n_votes} vote{'s' if board.n_votes != 1 else ''} in {board.n_battles} "
             f"battle{'s' if board.n_battles != 1 else ''}.** Elo: 1000 is average; 400 points more means "
             "10:1 odds of being preferred. The interval is where the Elo lies with 95% confidence."]
    waiting = [r.name for r in board.ratings if r.provisional]
    if waiting:
        who = ", ".join(waiting[:4]) + (f" and {len(waiting) - 4} more" if len(waiting) > 4 else "")
        lines.append(f"Rank — for {who}: provisional until {min_votes} votes each; vote on more battles.")
    if _all_overlap(board):
        lines.append("Rank — for all: their 95% intervals overlap, so the votes do not yet tell them apart.")
    elif any("shared" in str(row["rank"]) for row in people_rows(board, min_votes)):
        lines.append("A shared rank: those contenders' 95% intervals overlap, so the votes do not separate them.")
    return "\n\n".join(lines)


def ratings_figure(board: Leaderboard):
    """Elo with 95% interval error bars, best on the left; provisional contenders hollow and grey."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for provisional, label, color, symbol in ((False, "rated", "#2b6cb0", "circle"),
                                              (True, "provisional", "#a0aec0", "circle-open")):
        rows = [r for r in board.ratings if r.provisional == provisional]
        if not rows:
            continue
        fig.add_trace(go.Scatter(
            x=[r.name for r in rows],
            y=[round(r.elo) for r in rows],
            mode="markers",
            name=label,
            marker={"color": color, "symbol": symbol, "size": 11, "line": {"width": 2, "color": color}},
            error_y={"type": "data", "symmetric": False, "color": color,
                     "array": _none_nan(r.elo_hi - r.elo for r in rows),
                     "arrayminus": _none_nan(r.elo - r.elo_lo for r in rows)},
            customdata=[[r.rank if r.rank is not None else "—", r.votes,
                         f"{r.elo_lo:.0f}–{r.elo_hi:.0f}" if math.isfinite(r.lo) else "no interval yet",
                         f"{win_rate(r):.0%}" if r.votes else "—"] for r in rows],
            hovertemplate="%{x}<br>Elo %{y:.0f} (95%: %{customdata[2]})<br>win rate %{customdata[3]}"
                          "<br>rank %{customdata[0]} · %{customdata[1]} votes<extra></extra>",
        ))
    fig.update_layout(
        title=f"Contender ratings ({board.n_votes} votes, {board.n_battles} battles, 95% intervals)",
        xaxis={"title": "contender", "categoryorder": "array", "categoryarray": board.names},
        yaxis={"title": "Elo (points; 1000 = average)", "tickformat": ".0f", "zeroline": False},
        legend={"orientation": "h", "y": -0.25},
        height=380, margin={"l": 60, "r": 20, "t": 50, "b": 60},
        template="plotly_white",
    )
    fig.add_hline(y=ELO_BASE, line_dash="dot", line_color="#a0aec0")
    return fig


def head_to_head_figure(board: Leaderboard):
    """Heatmap of how often the row contender was preferred to the column one (ties count half), in percent."""
    import plotly.graph_objects as go

    rate, games = board.head_to_head, board.games
    text = [[f"{rate[i, j]:.0%}<br>{games[i, j]:g} vote{'' if games[i, j] == 1 else 's'}" if games[i, j] > 0 else ""
             for j in range(len(board.names))] for i in range(len(board.names))]
    fig = go.Figure(go.Heatmap(
        z=[[None if v is None else round(100 * v) for v in _none_nan(row)] for row in rate],
        x=board.names,
        y=board.names,
        text=text,
        texttemplate="%{text}",
        colorscale="RdBu",
        zmin=0.0, zmid=50.0, zmax=100.0,
        colorbar={"title": "row wins (%)", "ticksuffix": "%"},
        hovertemplate="%{y} vs %{x}: %{text}<extra></extra>",
    ))
    fig.update_layout(
        title="Head to head: how often the row beat the column (%)",
        xaxis={"title": "opponent", "side": "top"},
        yaxis={"title": "contender", "autorange": "reversed"},
        height=380, margin={"l": 60, "r": 20, "t": 80, "b": 40},
        template="plotly_white",
    )
    return fig

# ---------------------------------------------------------------------------------------------------
# Simulation: shared by the tests, the benchmark and demo data for the Compare tab.


def simulate_votes(
    strengths: Mapping[str, float],
    n_votes: int,
    n_battles: int | None = None,
    tie_rate: float = 0.0,
    per_battle: int = 2,
    seed: int = 0,
    prompt_sets: Sequence[str] = (),
) -> list[Vote]:
    """Votes drawn from a known Bradley–Terry model, so a fit can be checked against the truth.

    Each battle shows `per_battle` random contenders; each vote picks a random battle and a random pair
    in it. Ties happen at `tie_rate` and the decisive odds are adjusted so the expected score (ties = 1/2)
    is exactly the BT probability; that keeps the half-win fit unbiased, so tests can demand close
    recovery. Needs tie_rate / 2 <= P(i beats j) <= 1 - tie_rate / 2 for every pair.
    """
    rng = np.random.default_rng(seed)
    names = list(strengths)
    s = np.array([strengths[n] for n in names], dtype=float)
    n_battles = n_battles or n_votes
    lineup = np.argsort(rng.random((n_battles, len(names))), axis=1)[:, :per_battle]
    battle = rng.integers(0, n_battles, n_votes)
    pick = np.argsort(rng.random((n_votes, per_battle)), axis=1)[:, :2]
    a = lineup[battle, pick[:, 0]]
    b = lineup[battle, pick[:, 1]]
    p = expit(s[a] - s[b])
    if np.any(p < tie_rate / 2) or np.any(p > 1 - tie_rate / 2):
        raise ValueError("tie_rate too high for these strengths: a pair would need negative decisive odds")
    tie = rng.random(n_votes) < tie_rate
    a_wins = rng.random(n_votes) < (p - tie_rate / 2) / (1 - tie_rate)
    outcome = np.where(tie, "tie", np.where(a_wins, "a", "b"))
    sets = [prompt_sets[i % len(prompt_sets)] for i in battle] if prompt_sets else [None] * n_votes
    return [
        Vote(f"battle-{battle[v]}", names[a[v]], names[b[v]], str(outcome[v]), prompt_set=sets[v])
        for v in range(n_votes)
    ]
