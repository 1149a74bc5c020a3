"""Compare: contenders, blind battles on the resident pipeline, votes in DuckDB, the leaderboard."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio.features.compare import BattleSettings, CompareError, Contender
from studio.params import LoraRef

FAST = BattleSettings(steps=2)


@pytest.fixture
def arena(app, studio, lora_files):
    shutil.copy(lora_files["slime"], studio.settings.loras_dir / "slime.safetensors")
    a = app.arena
    a.save_contender(Contender("base"))
    a.save_contender(Contender("slime-1.0", loras=(LoraRef("slime", 1.0),)))
    a.save_contender(Contender("slime-0.5", loras=(LoraRef("slime", 0.5),)))
    a.save_contender(Contender("slime-1.5", loras=(LoraRef("slime", 1.5),)))
    return a


def battle(arena, names, **kw):
    job = arena.submit_battle(names, kw.pop("prompt", "a slime"), settings=kw.pop("settings", FAST), **kw)
    return arena.battle(arena.studio.result(arena.studio.queue.wait(job, 120)))


def test_four_way_battle_uses_adapters_not_reloads(arena):
    view = battle(arena, ["base", "slime-1.0", "slime-0.5", "slime-1.5"], seed=5)
    assert [s["slot"] for s in view["slots"]] == ["A", "B", "C", "D"]
    assert arena.studio.manager.loads == 1 and arena.studio.manager.lora_loads == 1
    pixels = [np.asarray(Image.open(s["raw_path"])) for s in view["slots"]]
    assert len({p.tobytes() for p in pixels}) == 4  # four different contenders, four different images


def test_blind_battle_hides_names_until_the_vote(arena):
    names = ["base", "slime-1.0"]
    view = battle(arena, names, seed=3)
    text = json.dumps(view)
    assert not any(n in text for n in names) and "slime" not in text.replace("a slime", "")
    for s in view["slots"]:
        with Image.open(s["path"]) as im:
            assert not im.info.get("parameters") and "dgx-pixels" not in im.info  # no metadata to peek at
    voted = arena.vote(view["id"], "A", "tester")
    assert {s["contender"] for s in voted["slots"]} == set(names)
    assert voted["voted"] == "A"


def test_shown_order_is_randomised(arena):
    firsts = set()
    for i in range(6):
        job = arena.submit_battle(["base", "slime-1.0"], "x", seed=1, settings=BattleSettings(steps=1),
                                  blind=False, shuffle=random.Random(i))
        firsts.add(arena.battle(arena.studio.result(arena.studio.queue.wait(job, 60)))["slots"][0]["contender"])
    assert firsts == {"base", "slime-1.0"}


def test_same_prompt_and_seed_match_a_plain_generation(arena):
    from studio.params import GenerateParams

    view = battle(arena, ["base", "slime-1.0"], seed=9, blind=False)
    plain = arena.studio.generate(GenerateParams(prompt="a slime", seed=9, steps=2))
    slot = next(s for s in view["slots"] if s["contender"] == "base")
    assert np.array_equal(np.asarray(Image.open(slot["raw_path"])), np.asarray(Image.open(plain.images[0].raw_path)))


def test_bad_votes_and_battles_are_refused(arena, studio):
    view = battle(arena, ["base", "slime-1.0"], seed=1)
    with pytest.raises(CompareError, match="unknown battle"):
        arena.vote("nope", "A")
    with pytest.raises(CompareError, match="vote must be one of"):
        arena.vote(view["id"], "C")
    arena.vote(view["id"], "B")
    with pytest.raises(CompareError, match="already has a vote"):
        arena.vote(view["id"], "A")
    assert studio.store.query("SELECT count(*) AS n FROM votes")[0]["n"] == 1
    with pytest.raises(CompareError, match="2 to 4 contenders"):
        arena.submit_battle(["base"], "x")
    with pytest.raises(CompareError, match="unknown contender"):
        arena.submit_battle(["base", "ghost"], "x")
    (studio.settings.loras_dir / "slime.safetensors").unlink()  # a contender's LoRA file disappeared
    jobs = studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"]
    with pytest.raises(CompareError, match="contender 'slime-1.0'.*unknown LoRA 'slime'"):
        arena.submit_battle(["base", "slime-1.0"], "x")
    assert studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"] == jobs


def test_prompt_sets(arena, studio):
    assert len(arena.prompt_sets()["game-sprites"]) >= 20
    folder = studio.settings.data_dir / "prompt_sets"
    folder.mkdir()
    (folder / "empty.toml").write_text("prompts = []\n")
    with pytest.raises(CompareError, match="prompt set 'empty' is empty"):
        arena.pick_prompt("empty")
    with pytest.raises(CompareError, match="unknown prompt set"):
        arena.pick_prompt("nope")
    (folder / "broken.toml").write_text("prompts = [1, 2]\n")
    with pytest.raises(CompareError, match="broken.toml: field 'prompts'"):
        arena.prompt_sets()


def test_leaderboard_from_votes_and_cli(arena, studio, capsys):
    from scipy.optimize import minimize
    from scipy.special import log_expit

    from studio.frontends.cli import main

    outcomes = ["A", "A", "B", "tie", "both_bad", "A"]
    wins: list[tuple[str, str, float]] = []  # (winner, loser, weight), read from the revealed slots
    for i, choice in enumerate(outcomes):
        view = battle(arena, ["base", "slime-1.0"], seed=i, settings=BattleSettings(steps=1),
                      shuffle=random.Random(0), prompt_set="game-sprites")
        who = {s["slot"]: s["contender"] for s in arena.vote(view["id"], choice)["slots"]}
        if choice in ("tie", "both_bad"):
            wins += [(who["A"], who["B"], 0.5), (who["B"], who["A"], 0.5)]
        else:
            wins.append((who[choice], who["B" if choice == "A" else "A"], 1.0))
    best_of = battle(arena, ["base", "slime-1.0", "slime-0.5"], seed=1, settings=BattleSettings(steps=1))
    who = {s["slot"]: s["contender"] for s in arena.vote(best_of["id"], "C")["slots"]}
    wins += [(who["C"], other, 1.0) for slot, other in who.items() if slot != "C"]  # best beats each other one
    votes = arena.votes()
    assert len(votes) == len(outcomes) + 2  # best-of-3 = best beats each of the other two
    board = arena.leaderboard(rounds=50, min_votes=2)
    # the tallies, counted by hand from the votes cast
    names = ["base", "slime-1.0", "slime-0.5", "slime-1.5"]
    for name in names:
        r = board.rating(name)
        n_ties = sum(w == 0.5 and name == a for a, _, w in wins)
        assert (r.wins, r.losses, r.ties) == (sum(w == 1 and name == a for a, _, w in wins),
                                              sum(w == 1 and name == b for _, b, w in wins), n_ties), name
        assert r.votes == r.wins + r.losses + r.ties
    # the scores: Bradley-Terry fitted here by a general-purpose optimiser on the documented objective
    # (log-likelihood, ties as half a win each way, minus 0.01/2 * sum of squared scores)
    idx = {n: i for i, n in enumerate(names)}

    def loss(s):
        return -sum(w * log_expit(s[idx[a]] - s[idx[b]]) for a, b, w in wins) + 0.005 * float(s @ s)

    fit = minimize(loss, np.zeros(len(names)), method="BFGS", options={"gtol": 1e-9}).x
    assert np.allclose([board.rating(n).score for n in names], fit - fit.mean(), atol=1e-5)
    assert board.rating("slime-1.5").votes == 0 and board.rating("slime-1.5").provisional
    assert [r.name for r in board.ratings] == sorted(names, key=lambda n: -fit[idx[n]])  # best first
    assert list(arena.leaderboard("game-sprites", rounds=10).names)

    studio.close()  # the CLI opens the same data folder, as a person would after stopping the studio
    cfg = studio.settings.data_dir.parent / "studio.toml"
    cfg.write_text(f'data_dir = "{studio.settings.data_dir}"\nmodels_dir = "{studio.settings.models_dir}"\n')
    assert main(["--config", str(cfg), "leaderboard", "--json", "--rounds", "50", "--min-votes", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ratings"] == board.to_rows() and printed["n_votes"] == len(votes)


@pytest.mark.slow  # a second interpreter, killed
def test_votes_survive_a_killed_studio(arena, studio, tmp_path):
    view = battle(arena, ["base", "slime-1.0"], seed=2)
    studio.close()
    cfg = tmp_path / "kill.toml"
    cfg.write_text(f'data_dir = "{studio.settings.data_dir}"\nmodels_dir = "{studio.settings.models_dir}"\n')
    code = (
        "import os, signal\n"
        "from studio.frontends.assemble import App\nfrom studio.settings import load_settings\n"
        f"st = App(load_settings({str(cfg)!r}))\n"
        f"st.arena.vote({view['id']!r}, 'B', 'kill-test')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -9
    from studio.store import Store

    store = Store(studio.settings.db_path)
    rows = store.query("SELECT choice, voter FROM votes WHERE battle_id = ?", [view["id"]])
    store.close()
    assert rows == [{"choice": "B", "voter": "kill-test"}]


def test_export_votes(arena, tmp_path):
    view = battle(arena, ["base", "slime-1.0"], seed=4)
    arena.vote(view["id"], "A", "me")
    csv = arena.export_votes(tmp_path / "votes.csv")
    text = csv.read_text()
    assert "battle_id" in text and view["id"] in text and "me" in text
    import duckdb

    pq = arena.export_votes(tmp_path / "votes.parquet")
    assert duckdb.sql(f"SELECT choice FROM '{pq}'").fetchall() == [("A",)]
    with pytest.raises(CompareError, match="csv or .parquet"):
        arena.export_votes(tmp_path / "votes.xlsx")


def test_contender_parse_and_validation():
    c = Contender.parse("mine=sdxl+pixel-art:0.8+other")
    assert (c.name, c.model, [r.name for r in c.loras]) == ("mine", "sdxl", ["pixel-art", "other"])
    assert Contender.parse("plain").model is None
    with pytest.raises(CompareError, match="contender name"):
        Contender("../evil")
    assert Contender.from_dict(c.to_dict()) == c


def test_blind_battle_over_the_api_names_no_contender(live_studio, lora_files):
    from gradio_client import Client

    arena = live_studio.app.arena
    arena.save_contender(Contender("base-model"))
    arena.save_contender(Contender("secret-lora", loras=(LoraRef("slime", 0.7),)))
    c = Client(live_studio.url, verbose=False)
    bid, images, info = c.predict(["base-model", "secret-lora"], "a castle", "game-sprites", "5", 2, True,
                                  api_name="/battle")
    payload = json.dumps([bid, images, info])
    assert "base-model" not in payload and "secret-lora" not in payload and "slime" not in payload
    for item in images:
        with Image.open(item["image"]) as im:
            assert "parameters" not in im.info
    images, info = c.predict(bid, "", api_name="/vote_a")
    assert "base-model" in info and "secret-lora" in info


def test_lora_weight_sweep_grid(arena, studio):
    from studio.params import GenerateParams

    params = GenerateParams(prompt="a slime", seed=3, steps=2)
    job = arena.submit_sweep(params, "lora_weight", [0.0, 0.5, 1.0], lora="slime")
    out = studio.result(studio.queue.wait(job, 120))
    assert out["labels"] == ["lora_weight 0", "lora_weight 0.5", "lora_weight 1"]
    grid = Image.open(out["grid"])
    w, h = out["cells"][0].size
    k = max(1, 128 // max(w, h))
    assert grid.size == (3 * (w * k + 4), h * k + 16)
    plain = studio.generate(GenerateParams(prompt="a slime", seed=3, steps=2))
    assert np.array_equal(np.asarray(out["cells"][0]), np.asarray(Image.open(plain.images[0].path)))
    assert studio.manager.loads == 1
    with pytest.raises(CompareError, match="sweep axis"):
        arena.submit_sweep(params, "denoise", [1, 2])
    with pytest.raises(ValueError, match="unknown sampler"):  # a sampler sweep takes sampler names
        arena.submit_sweep(params, "sampler", [1, 2])
    with pytest.raises(CompareError, match="needs a LoRA"):
        arena.submit_sweep(params, "lora_weight", [0.5, 1.0])
