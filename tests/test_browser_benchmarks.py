"""Issue 20, must show 2: with the studio running, "Run benchmarks" in the Metrics tab runs the quick suite on the
GPU queue with progress, and the history plot shows both runs. Tiny, so each run takes seconds."""

from __future__ import annotations

import re

import pytest

from tests.conftest import open_studio

pytestmark = pytest.mark.browser

WATCH_STATUS = """() => {
    window.benchTexts = [];
    const el = document.querySelector('#bench-status');
    new MutationObserver(() => {
        const overlay = el.querySelector('[data-testid=status-tracker]');
        if (overlay && overlay.innerText.trim()) window.benchTexts.push(overlay.innerText.trim());
    }).observe(el, {childList: true, subtree: true, characterData: true, attributes: true});
}"""
HISTORY_POINTS = """() => {
    const plot = document.querySelector('#bench-history .js-plotly-plot');
    return plot && plot.data ? plot.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0) : -1;
}"""


def _run_once(pg, before: str | None) -> str:
    """Click Run benchmarks; the run id the status reports once the run is done (a new one)."""
    pg.click("#bench-run")
    pg.wait_for_function("(b) => { const t = document.querySelector('#bench-status').innerText; "
                         "const m = t.match(/Run `?([0-9a-f]{12})`?[^\\n]*figures stored/); "
                         "return !!m && m[1] !== b && !/processing|queue/.test(t); }", arg=before, timeout=120_000)
    return re.search(r"Run `?([0-9a-f]{12})`?", pg.inner_text("#bench-status")).group(1)


def test_run_benchmarks_twice_from_the_metrics_tab(browser, live_studio):
    pg = open_studio(browser, live_studio.url, 1440, 900)
    try:
        pg.get_by_role("tab", name="Metrics").click()
        pg.get_by_role("tab", name="Benchmarks").click()
        pg.wait_for_selector("#bench-run", state="visible", timeout=20_000)
        pg.locator("#bench-tiny input").check()
        pg.evaluate(WATCH_STATUS)
        ids = [_run_once(pg, None)]
        ids.append(_run_once(pg, ids[0]))
        assert ids[0] != ids[1] and "quick benchmarks (tiny)" in pg.inner_text("#bench-status")
        # progress while it ran: the benchmark being measured, as Gradio's status overlay shows it
        texts = pg.evaluate("window.benchTexts")
        assert any("studio vs direct diffusers" in t for t in texts), texts[:20]
        # the history shows both runs, one point each
        pg.wait_for_function(f"({HISTORY_POINTS})() === 2", timeout=30_000)
        assert "studio_over_direct" in pg.locator("#bench-series input").input_value()
        last = pg.inner_text("#bench-last")
        assert "switch_speedup" in last and "s_per_image" in last
        # the rows are in the studio's DuckDB file, on the queue as jobs of their own
        store = live_studio.studio.store
        runs = store.query("SELECT run_id, count(*) AS n FROM benchmarks GROUP BY run_id")
        assert {r["run_id"] for r in runs} >= set(ids)
        jobs = store.query("SELECT kind, source, status FROM jobs WHERE id IN (?, ?)", ids)
        assert jobs == [{"kind": "bench", "source": "ui", "status": "done"}] * 2
        # and the comparison of the two runs is filled in
        assert "studio_over_direct" in pg.inner_text("#bench-compare")
    finally:
        pg.context.close()
