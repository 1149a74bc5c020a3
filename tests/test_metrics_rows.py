"""Metrics rows and the leaderboard as people read them (no browser): what each job made and how long it took,
training runs as rows, numbers rounded, and empty states that say what to do."""

from __future__ import annotations

import re
import time

import pytest

from studio.features import metrics
from studio.features.compare import BattleSettings, Contender
from studio.features.ratings import Vote, board_note, leaderboard, people_rows, ratings_figure


def test_battle_and_sweep_rows_have_seconds_and_images(app, studio):
    arena = app.arena
    arena.save_contender(Contender("plain"))
    arena.save_contender(Contender("also-plain", steps=1))
    job = arena.submit_battle(["plain", "also-plain"], "a gem", seed=3, settings=BattleSettings(steps=1))
    studio.result(studio.queue.wait(job, 120))
    from studio.params import GenerateParams

    sweep = arena.submit_sweep(GenerateParams(prompt="a gem", seed=1, steps=1), "steps", [1, 2])
    studio.result(studio.queue.wait(sweep, 120))
    frame = metrics.jobs_frame(studio.store)
    battle = frame[frame["kind"] == "battle"].iloc[0]
    assert battle["status"] == "done" and battle["seconds"] > 0 and battle["images"] == 2
    assert re.fullmatch(r"\d+x\d+", battle["sizes"])  # both sprites the same size: named once
    swept = frame[frame["kind"] == "sweep"].iloc[0]
    assert swept["seconds"] > 0 and swept["images"] == 2


def test_every_distinct_sprite_size_of_a_job(studio):
    store = studio.store
    store.add_job("mixed", "generate", "python", None, {}, "a mixed batch")
    store.mark_job("mixed", "running")
    store.finish_job("mixed", {}, [
        {"id": f"m{i}", "idx": i, "seed": i, "path": f"/nowhere/{i}.png", "width": w, "height": h}
        for i, (w, h) in enumerate([(32, 32), (24, 32), (32, 32)])])
    row = metrics.jobs_frame(studio.store).set_index("what").loc["a mixed batch"]
    assert row["sizes"] == "32x32, 24x32" and row["images"] == 3


def test_training_runs_become_rows():
    t0 = time.time() - 100
    runs = [{"run_id": "20250101-000000-slime-lora", "state": "done", "step": 2, "total": 2, "started": t0,
             "updated": t0 + 42.25},
            {"run_id": "broken", "state": "failed"}]  # no start time: not a row
    frame = metrics.runs_frame(runs)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["kind"] == "training" and row["status"] == "done" and row["seconds"] == pytest.approx(42.25)
    assert "slime-lora (step 2/2)" in row["what"]
    people = metrics.table_for_people(frame)
    assert people.iloc[0]["seconds"] == "42.2" and people.iloc[0]["job"] == "run"


def test_people_table_rounds_and_empty_figures_say_what_to_do(studio):
    frame = metrics.activity_frame(studio)
    assert frame.empty
    assert "generate a sprite" in metrics.job_time_figure(frame).to_json()
    store = studio.store
    store.add_job("slow", "generate", "python", None, {}, "slow one")
    store.mark_job("slow", "running")
    store.finish_job("slow", {}, [{"id": "s0", "idx": 0, "seed": 0, "path": "/x.png", "width": 16, "height": 16}])
    table = metrics.table_for_people(metrics.activity_frame(studio))
    assert list(table.columns) == metrics.PEOPLE_COLUMNS
    assert re.fullmatch(r"\d+\.\d", table.iloc[0]["seconds"]) and table.iloc[0]["images"] == "1"
    assert table.iloc[0]["job"].startswith("#")
    fig = metrics.job_time_figure(metrics.activity_frame(studio))
    assert fig.layout.yaxis.title.text == "wall time (seconds)" and fig.layout.xaxis.title.text == "started (UTC)"


def test_leaderboard_rows_for_people():
    votes = [Vote(f"b{i}", "ember", "void", "a" if i % 4 else "b") for i in range(24)]
    votes += [Vote("n1", "newcomer", "ember", "tie")]
    board = leaderboard(votes, rounds=30, min_votes=20, names=["ember", "void", "newcomer"])
    rows = {r["contender"]: r for r in people_rows(board, 20)}
    ember = rows["ember"]
    assert re.fullmatch(r"\d{3,4}", ember["Elo"])  # whole points, not 1138.146671
    assert re.fullmatch(r"\d{3,4}–\d{3,4}", ember["95% interval"])
    assert re.fullmatch(r"\d{1,3}%", ember["win rate"]) and ember["status"] == "ranked"
    newcomer = rows["newcomer"]
    assert newcomer["rank"] == "—" and newcomer["status"] == "provisional: 19 more votes to rank"
    assert newcomer["win rate"] == "50%"
    note = board_note(board, 20)
    assert "Rank — for newcomer" in note and "25 votes in 25 battles" in note
    fig = ratings_figure(board)
    assert fig.layout.yaxis.title.text.startswith("Elo")
    assert all(float(y).is_integer() for trace in fig.data for y in trace.y)


def test_overlapping_intervals_rank_no_one():
    votes = [Vote(f"b{i}", "x", "y", "a" if i % 2 else "b") for i in range(40)]
    board = leaderboard(votes, rounds=30, min_votes=20)
    assert {r["rank"] for r in people_rows(board)} == {"—"}
    assert "intervals overlap" in board_note(board)


def test_empty_leaderboard_says_what_to_do():
    assert board_note(leaderboard([])) == ("Save two contenders and vote on a few battles: the leaderboard "
                                           "appears here.")
    assert "No votes yet" in board_note(leaderboard([], names=["a", "b"]))
