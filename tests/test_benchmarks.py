"""Benchmarks on the user's own box, in DuckDB (issue 20): the quick suite through the CLI and through the
queue, the rows and their context, a run that touches none of the user's data, refusals, cancel; the figures
every job records and the production figures the Metrics tab shows from them; the analysis functions; and no
product module reading the repository's bench folder.

The suites run tiny here (1-2 denoising steps, one repeat); `dgx-pixels bench --suite quick` at full size is
what the README times.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from studio.features import metrics, training_runs
from studio.features.benchmarks.run import BenchSpec
from studio.frontends.mcp import build_mcp
from studio.params import GenerateParams
from studio.store import now

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"cold", "generation", "lora_switch", "pixel", "mcp"}
CONTEXT = ["studio_version", "model", "model_hash", "device", "dtype", "torch", "diffusers", "cpu", "threads",
           "host", "settings", "created", "run_id", "suite"]


def _runs(store) -> list[str]:
    return [r["run_id"] for r in store.query("SELECT run_id FROM benchmarks GROUP BY run_id ORDER BY min(created)")]


@pytest.mark.slow  # two runs of the suite
def test_cli_bench_quick_adds_rows_with_context_and_a_second_run_adds_a_run_id(tmp_path, demo_model, capsys):
    """Must show 1, through the command a person types (tiny, so it takes seconds here)."""
    from studio.frontends.cli import main
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, demo_model)
    toml = tmp_path / "studio.toml"
    toml.write_text(f'[studio]\ndata_dir = "{settings.data_dir}"\nmodels_dir = "{settings.models_dir}"\n')
    assert main(["--config", str(toml), "bench", "--suite", "quick", "--tiny", "-q"]) == 0
    out = capsys.readouterr().out
    assert "studio_over_direct" in out and "switch_speedup" in out and "table benchmarks" in out
    assert main(["--config", str(toml), "bench", "--tiny", "-q", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)

    from studio.store import Store

    store = Store(settings.db_path)
    try:
        runs = _runs(store)
        assert len(runs) == 2 and runs[1] == printed["run_id"]
        rows = store.query("SELECT * FROM benchmarks WHERE run_id = ?", [runs[0]])
        assert {r["benchmark"] for r in rows} == QUICK
        assert not [r for r in rows if r["metric"] == "error"], rows
        for r in rows:
            missing = [c for c in CONTEXT if r[c] in (None, "")]
            assert not missing, (r["benchmark"], r["metric"], missing)
            assert r["model"] == "demo-tiny" and r["device"] == "cpu" and r["dtype"] == "float32"
            assert r["suite"] == "quick" and json.loads(r["settings"])["tiny"] is True
        if (ROOT / ".git").exists():
            assert all(re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", r["git_commit"]) for r in rows)
        figures = {(r["benchmark"], r["metric"]): r for r in rows}
        assert figures[("generation", "studio_over_direct")]["goal"] == 1.05
        assert figures[("lora_switch", "switch_speedup")]["better"] == "higher"
        assert figures[("pixel", "s_per_image")]["value"] > 0
        assert figures[("mcp", "list_models_overhead_ms")]["unit"] == "ms"
        assert all(figures[(b, "peak_mem_mb")]["value"] > 0 for b in QUICK)  # memory per phase
        jobs = store.query("SELECT kind, source, status FROM jobs ORDER BY seq")
        assert jobs == [{"kind": "bench", "source": "cli", "status": "done"}] * 2  # only the runs themselves
    finally:
        store.close()


@pytest.mark.slow  # 16 jobs and a battle
def test_a_run_on_the_queue_leaves_the_users_data_as_it_was(app, studio):
    """The run's sprites, jobs, contenders and LoRA live in a scratch studio that is removed afterwards."""
    app.benchmarks.mcp = build_mcp
    loras_before = sorted(p.name for p in studio.settings.loras_dir.iterdir())
    scratch_before = set(Path(tempfile.gettempdir()).glob("dgxp-bench-*"))
    result = app.benchmarks.run(BenchSpec("standard", tiny=True, only=("battle", "batch")), timeout=600)
    assert not result.errors, result.errors
    got = {(r["benchmark"], r["metric"]): r["value"] for r in result.rows}
    assert got[("battle", "battle_over_singles")] > 0
    for b in (1, 4, 8):
        assert got[("batch", f"batch{b}_sprites_per_min")] > 0
        assert got[("batch", f"batch{b}_p95_s")] >= got[("batch", f"batch{b}_p50_s")]
    store = studio.store
    assert store.query("SELECT kind FROM jobs") == [{"kind": "bench"}]
    assert store.query("SELECT count(*) AS n FROM images")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM contenders")[0]["n"] == 0
    assert sorted(p.name for p in studio.settings.loras_dir.iterdir()) == loras_before
    assert set(Path(tempfile.gettempdir()).glob("dgxp-bench-*")) == scratch_before  # the scratch studio is gone


def test_refuses_while_a_training_run_holds_the_gpu_and_gpu_suite_needs_cuda(app, monkeypatch):
    monkeypatch.setattr(training_runs, "active", lambda _studio: True)
    with pytest.raises(ValueError, match="training run has the GPU"):
        app.benchmarks.submit(BenchSpec("quick", tiny=True))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        app.benchmarks.submit(BenchSpec("gpu"))
    with pytest.raises(ValueError, match="unknown benchmark suite"):
        BenchSpec("fastest")
    with pytest.raises(ValueError, match="has no benchmark"):
        BenchSpec("quick", only=("training",))
    assert app.studio.store.query("SELECT count(*) AS n FROM jobs")[0]["n"] == 0  # nothing was queued


def test_cancel_stops_a_run_and_keeps_what_it_measured(app, studio):
    job = app.benchmarks.submit(BenchSpec("quick"))
    deadline = now() + timedelta(seconds=120)
    while "studio vs direct" not in job.stage and now() < deadline and not job.finished.is_set():
        job.finished.wait(0.05)
    assert studio.queue.cancel(job.id)
    studio.queue.wait(job, 120)
    assert job.status == "cancelled"
    measured = {r["benchmark"] for r in studio.store.query("SELECT benchmark FROM benchmarks")}
    assert measured == {"cold"}  # the benchmark finished before the cancel is kept, nothing after it
    assert studio.store.job(job.id)["status"] == "cancelled"


# -- what every job records, and the production figures from it -------------------------------------------------

def test_jobs_record_steps_per_s_peak_memory_and_device(studio):
    studio.generate(GenerateParams(prompt="a timed gem", seed=1, steps=3))
    row = studio.store.query("SELECT * FROM jobs WHERE prompt = 'a timed gem'")[0]
    assert row["steps"] == 3 and row["steps_per_s"] > 0 and row["peak_mem_mb"] > 0
    assert row["device"] == "cpu"
    job = studio.submit_generate(GenerateParams(prompt="a cancelled gem", seed=1, steps=50))
    while job.step < 2 and not job.finished.is_set():
        job.finished.wait(0.01)
    studio.queue.cancel(job.id)
    studio.queue.wait(job, 60)
    assert job.status == "cancelled" and job.figures is not None
    assert len(job.figures.step_seconds) == job.figures.steps - 1 and 2 <= job.figures.steps < 50
    row = studio.store.job(job.id)
    assert row["steps"] == job.figures.steps and row["device"] == "cpu" and row["peak_mem_mb"] > 0


def _job(store, job_id: str, model: str, seconds: float, sprites: int, age_days: float, kind="generate",
         status="done"):
    store.add_job(job_id, kind, "test", None, {"model": model}, f"prompt {job_id}")
    store.mark_job(job_id, "running")
    store.finish_job(job_id, {"model": model}, [
        {"id": f"{job_id}-{i}", "idx": i, "seed": i, "path": f"/nowhere/{job_id}-{i}.png", "width": 16,
         "height": 16} for i in range(sprites)])
    store.record_figures(job_id, 20, 10.0 + seconds, 100.0 * sprites, "cuda (test GPU)")
    with store.transaction() as con:
        con.execute("UPDATE jobs SET seconds = ?, created = ?, status = ? WHERE id = ?",
                    [seconds, now() - timedelta(days=age_days), status, job_id])


def test_production_figures_come_from_the_job_rows(studio):
    """Must show 3: p50/p95 latency and sprites/min per model from known rows, over the last day or week."""
    store = studio.store
    recent = {"a": [(2.0, 1), (4.0, 1), (6.0, 4), (8.0, 8)], "b": [(1.0, 2)]}
    for model, jobs in recent.items():
        for i, (seconds, sprites) in enumerate(jobs):
            _job(store, f"{model}{i}", model, seconds, sprites, age_days=0.1)
    _job(store, "old", "a", 100.0, 1, age_days=3)  # in the week, not the day
    _job(store, "ancient", "a", 500.0, 1, age_days=30)  # in neither
    _job(store, "lost", "a", 50.0, 1, age_days=0.1, status="failed")  # not finished: not a figure
    _job(store, "vote", "a", 60.0, 2, age_days=0.1, kind="cleanup")  # not a generation
    day = metrics.production_frame(store, 1).set_index("model")
    seconds = [2.0, 4.0, 6.0, 8.0]
    assert day.loc["a", "jobs"] == 4 and day.loc["a", "sprites"] == 14
    assert day.loc["a", "p50_s"] == pytest.approx(np.percentile(seconds, 50))
    assert day.loc["a", "p95_s"] == pytest.approx(np.percentile(seconds, 95))
    assert day.loc["a", "sprites_per_min"] == pytest.approx(60 * 14 / 20)
    assert day.loc["a", "steps_per_s"] == pytest.approx(np.median([12.0, 14.0, 16.0, 18.0]))
    assert day.loc["a", "peak_mem_mb"] == 800.0 and day.loc["a", "device"] == "cuda (test GPU)"
    assert day.loc["b", "sprites_per_min"] == pytest.approx(120.0)
    week = metrics.production_frame(store, 7).set_index("model")
    assert week.loc["a", "jobs"] == 5 and week.loc["a", "p95_s"] == pytest.approx(np.percentile([*seconds, 100], 95))
    assert metrics.production_frame(store, None).set_index("model").loc["a", "jobs"] == 6
    people = metrics.production_for_people(metrics.production_frame(store, 1))
    assert list(people.iloc[0])[:6] == ["a", "4", "14", "5", "7.7", "42.0"]
    fig = metrics.production_figure(metrics.production_frame(store, 1), "last day")
    assert [t.name for t in fig.data] == ["latency p50", "latency p95"]


# -- analysis of benchmark runs ------------------------------------------------------------------------------------

def _bench_rows(store, run_id: str, created, version: str, values: dict[str, float]):
    cols = "run_id, created, suite, benchmark, metric, value, unit, goal, better, settings, studio_version, model, device"
    with store.transaction() as con:
        for metric, value in values.items():
            goal, better = {"studio_over_direct": (1.05, "lower"), "switch_speedup": (20.0, "higher")}.get(
                metric, (None, "lower"))
            bench = "lora_switch" if metric == "switch_speedup" else "generation"
            con.execute(f"INSERT INTO benchmarks ({cols}) VALUES (?, ?, 'quick', ?, ?, ?, 'x', ?, ?, '{{}}', ?, "
                        "'demo-tiny', 'cpu')", [run_id, created, bench, metric, value, goal, better, version])


def test_history_comparison_last_run_and_export(studio, tmp_path):
    store = studio.store
    _bench_rows(store, "before", now() - timedelta(days=2), "0.1.0",
                {"studio_over_direct": 1.00, "switch_speedup": 40.0, "studio_s": 1.0})
    _bench_rows(store, "after", now(), "0.2.0", {"studio_over_direct": 1.10, "switch_speedup": 50.0,
                                                 "studio_s": 1.2})
    assert "generation / studio_over_direct" in metrics.bench_series(store)
    history = metrics.bench_history(store, "generation / studio_over_direct")
    assert list(history["run_id"]) == ["before", "after"]
    fig = metrics.history_figure(history, "generation / studio_over_direct")
    assert sum(len(t.x) for t in fig.data) == 2  # one point per run
    assert any(s.type == "line" and s.y0 == 1.05 for s in fig.layout.shapes)  # the goal line
    both = metrics.compare_runs(store, "before", "after").set_index("metric")
    assert both.loc["studio_over_direct", "change"] == "+10.0%" and both.loc["studio_over_direct", "B vs A"] == "worse"
    assert both.loc["switch_speedup", "B vs A"] == "better" and both.loc["switch_speedup", "goal"] == ">= 20"
    last = metrics.run_table(store).set_index("metric")
    assert last.loc["studio_over_direct", "met"] == "NO" and last.loc["switch_speedup", "met"] == "yes"
    runs = metrics.bench_runs(store)
    assert list(runs["run_id"]) == ["after", "before"] and "0.2.0" in metrics.run_label(runs.iloc[0])
    csv = metrics.export_benchmarks(store, tmp_path / "b.csv")
    assert csv.read_text().splitlines()[0].startswith("run_id,created,suite,benchmark,metric,value")
    parquet = metrics.export_benchmarks(store, tmp_path / "b.parquet")
    assert store.query("SELECT count(*) AS n FROM read_parquet(?)", [str(parquet)])[0]["n"] == 6
    with pytest.raises(ValueError):
        metrics.export_benchmarks(store, tmp_path / "b.xlsx")


# -- the product never reads the repository's bench folder --------------------------------------------------------

PATH_CALLS = {"Path", "PurePath", "PosixPath", "join", "joinpath"}


def _names_bench(node: ast.AST) -> bool:
    def is_bench(n: ast.AST) -> bool:
        return isinstance(n, ast.Constant) and n.value == "bench"

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(re.search(r"bench[/\\]", node.value))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return is_bench(node.left) or is_bench(node.right)
    if isinstance(node, ast.Call):
        called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        return called in PATH_CALLS and any(is_bench(a) for a in node.args)
    if isinstance(node, ast.Name | ast.Attribute):
        return bool(re.fullmatch(r"(?i)bench_results", getattr(node, "id", None) or getattr(node, "attr", "")))
    return False


def bench_paths(source: str) -> list[int]:
    """Lines where code names the bench folder: a string with `bench/` (or `bench\\`) in it, `... / "bench"`,
    `"bench" / ...`, `Path("bench")`, `os.path.join(..., "bench", ...)`, or the old `BENCH_RESULTS` name.
    Comments and docstrings are prose for people (pointing them at a script is fine); the job kind "bench" is not
    a path."""
    tree = ast.parse(source)
    prose = {id(body[0].value) for node in ast.walk(tree)
             if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
             and (body := node.body) and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)}
    return [node.lineno for node in ast.walk(tree) if id(node) not in prose and _names_bench(node)]


def test_no_product_module_reads_the_bench_folder():
    """Must show 4: the studio measures the box it runs on; bench/results/ is the repository's record only."""
    hits = []
    for pkg in ("studio", "tabs", "pipelines", "training"):
        for path in (ROOT / pkg).rglob("*.py"):
            lines = path.read_text(encoding="utf-8").splitlines()
            hits += [f"{path.relative_to(ROOT)}:{n}: {lines[n - 1].strip()}" for n in bench_paths("\n".join(lines))]
    assert not hits, "product modules naming the bench folder:\n" + "\n".join(hits)


@pytest.mark.parametrize("source, caught", [
    ('ROOT / "bench" / "results"', True), ("Path('bench/results')", True), ('p.parents[2] / "bench"', True),
    ("os.path.join(root, 'bench', 'results')", True), ("BENCH_RESULTS = 1", True), ("x = bench_results()", True),
    ('Path("bench")', True), ('x = "see bench/sdxl_gpu.py"', True), ('"""see bench/README.md"""', False),
    ('queue.submit("bench", spec)', False), ("# bench/results in a comment", False), ('"benchmarks"', False),
])
def test_the_bench_folder_rule_catches_each_way_of_naming_it(source, caught):
    assert bool(bench_paths(source)) == caught
