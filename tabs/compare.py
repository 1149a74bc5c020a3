"""Compare tab: contenders, blind battles with keyboard voting, and the leaderboard.

Layout and wiring only; every action is one call into `studio.arena`. Before a battle is voted on, the
battle area and every API response show slots A-D and images only, never a contender's name.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from studio import limits
from studio.features.compare import SLOTS, SWEEP_AXES, Arena, BattleSettings, Contender
from studio.features.ratings import (
    BOARD_COLUMNS,
    board_note,
    head_to_head_figure,
    people_rows,
    ratings_figure,
)
from studio.frontends.assemble import App
from studio.params import GenerateParams, parse_loras
from tabs.common import on_show, wait_for

MIN_VOTES = 20  # votes before a contender is ranked (the leaderboard's default)


def _names(arena: Arena) -> list[str]:
    return [c.name for c in arena.contenders()]


def _gallery(view: dict) -> list[tuple[str, str]]:
    """The battle's images for API clients (the page shows one labelled image per slot instead)."""
    return [(s["path"], s["slot"] + (f" · {s['contender']}" if "contender" in s else "")) for s in view["slots"]]


def _slot_label(view: dict, slot: dict) -> str:
    """'A' while blind; after the vote 'A · name', with a mark on the voted one."""
    if "contender" not in slot:
        return slot["slot"]
    picked = " ★ your pick" if view.get("voted") == slot["slot"] else ""
    return html.escape(f"{slot['slot']} · {slot['contender']}{picked}")


def _slots(view: dict | None) -> list:
    """Per slot (A-D): its column shown or hidden, its label, its image."""
    shown = view["slots"] if view else []
    boxes, labels, images = [], [], []
    for i in range(len(SLOTS)):
        slot = shown[i] if i < len(shown) else None
        boxes.append(gr.Column(visible=slot is not None))
        labels.append(_slot_label(view, slot) if slot else "")
        images.append(slot["path"] if slot else None)
    return [*boxes, *labels, *images]


def _reveal(view: dict) -> str:
    if "contender" not in view["slots"][0]:
        return f"Battle `{view['id']}` · seed {view['seed']} · **vote to reveal the contenders**"
    names = " · ".join(f"**{s['slot']}** = {s['contender']}" for s in view["slots"])
    voted = f" · your vote: **{view['voted']}**" if view["voted"] else ""
    return f"Battle `{view['id']}` · seed {view['seed']} · {names}{voted}"


def build(app: App, page: gr.Tab | None = None) -> None:
    """`page`: the tab; its lists and the leaderboard are re-read when the page loads and the tab opens."""
    studio = app.studio
    arena = app.arena
    problems: list[str] = []
    sets = list(arena.prompt_sets(problems))

    with gr.Accordion("Contenders", open=not arena.contenders()):
        with gr.Row():
            c_name = gr.Textbox(label="Name", placeholder="sdxl + pixel-art@0.8")
            c_model = gr.Dropdown([m["name"] for m in studio.models()], value=None, label="Model (blank = default)",
                                  allow_custom_value=True)
            c_loras = gr.Textbox(label="LoRAs (name:weight, …)")
            c_steps = gr.Number(label="Steps (0 = battle's)", value=0, precision=0)
            c_save = gr.Button("Save contender")
        c_list = gr.Markdown(_contender_table(arena), elem_id="contender-list")

    with gr.Row():
        picks = gr.Dropdown(_names(arena), multiselect=True, label="Contenders (2-4)", elem_id="picks",
                            max_choices=len(SLOTS), allow_custom_value=True)
        surprise = gr.Button("Surprise me", size="sm", elem_id="surprise")
        blind = gr.Checkbox(value=True, label="Blind (hide names until the vote)", elem_id="blind")
    with gr.Row():
        prompt_set = gr.Dropdown(sets, value=sets[0] if sets else None, label="Prompt set", elem_id="prompt-set")
        prompt = gr.Textbox(label="Prompt (blank = a random one from the set, for Battle! and Next battle)",
                            elem_id="battle-prompt")
        seed = gr.Textbox(label="Seed (blank = random; Next battle always draws a new one)", value="")
        steps = gr.Slider(1, limits.MAX_STEPS, value=30, step=1, label="Steps", elem_id="battle-steps")
    gr.Markdown("\n".join(f"⚠ prompt set skipped: {p}" for p in problems), visible=bool(problems))
    fight = gr.Button("Battle!", variant="primary", elem_id="fight")
    battle_id = gr.Textbox(visible=False, elem_id="battle-id")
    with gr.Column(elem_id="battle-area"):
        info = gr.Markdown("", elem_id="battle-info")
        # one image per slot under a label that is always on screen (a gallery crops its captions away)
        boxes, labels, slot_images = [], [], []
        with gr.Row(elem_id="battle-images", equal_height=True):
            for s in SLOTS:
                with gr.Column(visible=False, min_width=200, elem_id=f"slot-{s.lower()}") as box:
                    labels.append(gr.HTML(s, html_template='<div class="slot-label">${value}</div>',
                                          js_on_load=None, elem_id=f"slot-label-{s.lower()}"))
                    slot_images.append(gr.Image(type="filepath", format="png", show_label=False, interactive=False,
                                                height=288, buttons=["download", "fullscreen"],
                                                elem_id=f"slot-image-{s.lower()}", elem_classes=["pixelated"]))
                boxes.append(box)
        images = gr.Gallery(visible=False, format="png", elem_id="battle-gallery", label="Battle")  # for API clients
        with gr.Row():
            vote_a = gr.Button("A is better [1]", elem_id="vote-a")
            vote_b = gr.Button("B is better [2]", elem_id="vote-b")
            vote_tie = gr.Button("Tie [t]", elem_id="vote-tie")
            vote_bad = gr.Button("Both bad [x]", elem_id="vote-bad")
        with gr.Row():
            best = gr.Dropdown(list(SLOTS), label="Best of 3-4", value=None)
            vote_best = gr.Button("Vote best")
            voter = gr.Textbox(label="Your name (optional)", value="")
            next_btn = gr.Button("Next battle [n]", elem_id="next-battle")
    slot_outputs = [*boxes, *labels, *slot_images]

    with gr.Accordion("Sweep (X/Y plot): one prompt and seed, one setting varied", open=False):
        with gr.Row():
            sw_prompt = gr.Textbox(label="Prompt", value="a red slime, pixel art game sprite")
            sw_seed = gr.Textbox(label="Seed", value="1")
            sw_axis = gr.Radio(list(SWEEP_AXES), value="lora_weight", label="Vary",
                               info="sampler: names, e.g. Euler, DPM++ 2M Karras, Lightning")
            sw_lora = gr.Dropdown([lo["name"] for lo in studio.loras()], label="LoRA (for lora_weight)",
                                  allow_custom_value=True)
            sw_values = gr.Textbox(label="Values", value="0.4, 0.6, 0.8, 1.0, 1.2")
            sw_steps = gr.Slider(1, 100, value=30, step=1, label="Steps (when not varied)")
        sw_run = gr.Button("Run sweep")
        sw_grid = gr.Image(label="Sweep", type="filepath", format="png", elem_classes=["pixelated"])

    with gr.Accordion("Leaderboard", open=True), gr.Column(elem_id="leaderboard"):
        with gr.Row():
            board_set = gr.Dropdown(["(all)", *sets], value="(all)", label="Prompt set")
            refresh = gr.Button("Refresh leaderboard", elem_id="refresh-board")
            export_fmt = gr.Radio(["csv", "parquet"], value="csv", label="Export votes as")
            export_btn = gr.Button("Export")
        board_info = gr.Markdown(elem_id="board-note")
        board_table = gr.Dataframe(label="Leaderboard", interactive=False, visible=False, elem_id="board-table")
        with gr.Row():
            ratings_plot = gr.Plot(label="Elo with 95% intervals", elem_id="board-ratings", visible=False)
            h2h_plot = gr.Plot(label="Head-to-head win rate", elem_id="board-h2h", visible=False)
        export_file = gr.File(label="Votes", visible=False)

    def lists():
        names = _names(arena)
        problems_now: list[str] = []
        sets_now = list(arena.prompt_sets(problems_now))
        return (gr.update(choices=names), _contender_table(arena),
                gr.update(choices=[m["name"] for m in studio.models()]),
                gr.update(choices=[lo["name"] for lo in studio.loras()]),
                gr.update(choices=sets_now), gr.update(choices=["(all)", *sets_now]))

    on_show(page, lists, [picks, c_list, c_model, sw_lora, prompt_set, board_set])

    def show_board(pset):
        board = arena.leaderboard(None if pset in (None, "(all)") else pset, min_votes=MIN_VOTES)
        rows = people_rows(board, MIN_VOTES)
        voted = board.n_votes > 0
        return (board_note(board, MIN_VOTES),
                gr.Dataframe(value=pd.DataFrame(rows, columns=list(BOARD_COLUMNS)), visible=voted),
                gr.Plot(value=ratings_figure(board) if voted else None, visible=voted),
                gr.Plot(value=head_to_head_figure(board) if voted else None, visible=voted))

    board_outputs = [board_info, board_table, ratings_plot, h2h_plot]
    refresh.click(show_board, board_set, board_outputs, api_name="leaderboard")
    board_set.change(show_board, board_set, board_outputs, api_visibility="private")
    if page is not None:  # the bootstrap is drawn when the tab is opened, not on every page load
        page.select(show_board, board_set, board_outputs, api_visibility="private", show_progress="hidden")
    else:
        on_show(None, show_board, board_outputs, [board_set])

    def save_contender(name, model, loras, steps_):
        try:
            refs = parse_loras(loras)
            arena.save_contender(Contender(name.strip(), model or None, refs, int(steps_) or None))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return _contender_table(arena), gr.update(choices=_names(arena))

    c_save.click(save_contender, [c_name, c_model, c_loras, c_steps], [c_list, picks], api_name="save_contender"
                 ).success(show_board, board_set, board_outputs, api_visibility="private",
                                    show_progress="hidden")

    def surprise_me():
        try:
            return list(arena.surprise_pair())
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    surprise.click(surprise_me, None, picks, api_name="surprise")

    def run_battle(names, prompt_, pset, seed_, steps_, blind_, request: gr.Request,
                   progress=gr.Progress()):  # noqa: B008 - Gradio injects it
        typed = (prompt_ or "").strip()
        try:
            text = typed or arena.pick_prompt(pset)
            job = arena.submit_battle(list(names or []), text, seed=int(seed_) if str(seed_).strip() else None,
                                      prompt_set=None if typed else pset,
                                      settings=BattleSettings(steps=int(steps_)), blind=bool(blind_),
                                      owner=request.session_hash if request else None)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        battle_id = wait_for(studio, job, progress, "rendering contenders: step")
        if battle_id is None:
            raise gr.Error("the battle was cancelled")
        view = arena.battle(battle_id)
        return view["id"], _gallery(view), _reveal(view) + f"\n\n> {view['prompt']}"

    def show_slots(bid):
        return _slots(arena.battle(bid) if bid else None)

    battle_outputs = [battle_id, images, info]
    fight.click(run_battle, [picks, prompt, prompt_set, seed, steps, blind], battle_outputs, api_name="battle"
                ).success(show_slots, battle_id, slot_outputs, api_visibility="private", show_progress="hidden")

    def next_battle(names, prompt_, pset, steps_, blind_, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        """The same contenders again with a new seed, on the typed prompt or, with none, one from the set."""
        return run_battle(names, prompt_, pset, "", steps_, blind_, request, progress)

    next_btn.click(next_battle, [picks, prompt, prompt_set, steps, blind], battle_outputs, api_name="next_battle"
                   ).success(show_slots, battle_id, slot_outputs, api_visibility="private", show_progress="hidden")

    def cast(bid, choice, who):
        if not bid:
            raise gr.Error("start a battle first")
        try:
            view = arena.vote(bid, choice, who or None)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return _gallery(view), _reveal(view) + f"\n\n> {view['prompt']}"

    def after_vote(bid, pset):
        """The slots named and the leaderboard (table and plots) with this vote in it."""
        return [*show_slots(bid), *show_board(pset)]

    for button, fn, inputs, api in (
        (vote_a, lambda b, w: cast(b, "A", w), [battle_id, voter], "vote_a"),
        (vote_b, lambda b, w: cast(b, "B", w), [battle_id, voter], "vote_b"),
        (vote_tie, lambda b, w: cast(b, "tie", w), [battle_id, voter], "vote_tie"),
        (vote_bad, lambda b, w: cast(b, "both_bad", w), [battle_id, voter], "vote_both_bad"),
        (vote_best, lambda b, c, w: cast(b, c or "", w), [battle_id, best, voter], "vote"),
    ):
        button.click(fn, inputs, [images, info], api_name=api).success(
            after_vote, [battle_id, board_set], slot_outputs + board_outputs, api_visibility="private",
            show_progress="hidden")

    def run_sweep(prompt_, seed_, axis, lora, values, steps_, progress=gr.Progress()):  # noqa: B008
        try:
            texts = [v.strip() for v in str(values).replace(";", ",").split(",") if v.strip()]
            vals = texts if axis == "sampler" else [float(v) for v in texts]
            params = GenerateParams(prompt=prompt_ or "", seed=int(seed_) if str(seed_).strip() else None,
                                    steps=int(steps_))
            job = arena.submit_sweep(params, axis, vals, lora or None)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        out = wait_for(studio, job, progress, "sweep: step")
        if out is None:
            raise gr.Error("the sweep was cancelled")
        return str(out["grid"])

    sw_run.click(run_sweep, [sw_prompt, sw_seed, sw_axis, sw_lora, sw_values, sw_steps], sw_grid, api_name="sweep")

    def export(fmt):
        out = Path(tempfile.mkdtemp(prefix="dgxp-votes-")) / f"votes.{fmt}"
        return gr.File(value=str(arena.export_votes(out)), visible=True)

    export_btn.click(export, export_fmt, export_file, api_name="export_votes")


def _contender_table(arena: Arena) -> str:
    rows = arena.contenders()
    if not rows:
        return "_No contenders yet: save at least two (e.g. the base alone, and the base with your LoRA)._"
    lines = ["| contender | model | LoRAs | steps |", "|---|---|---|---|"]
    for c in rows:
        loras = ", ".join(f"{r.name}@{r.weight:g}" for r in c.loras) or "—"
        lines.append(f"| {c.name} | {c.model or '(default)'} | {loras} | {c.steps or '—'} |")
    return "\n".join(lines)
