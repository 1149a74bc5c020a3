"""Pixel-grid recovery benchmark: our engine side by side with the open tools.

    .venv-bench/bin/python bench/pixel_recovery.py                    # dev set, ours + installed peers
    .venv-bench/bin/python bench/pixel_recovery.py --methods dgx_pixels  # only our engine
    .venv-bench/bin/python bench/pixel_recovery.py --dataset ../shared/bench/pixel-dev-hard \
        --methods dgx_pixels perfect_pixel --split even                # the hard set, one half
    .venv-bench/bin/python bench/pixel_recovery.py --pairs DIR        # any folder with in/ and gt/
    .venv-bench/bin/python bench/pixel_recovery.py --table bench/results/pixel_recovery.json

The metrics are the official scorer's (`score.py` of the dev set, imported from
--dataset, or from the dev set next to it when --dataset has none, e.g. the hard set;
not copied): exact size %, pixel accuracy (CIEDE2000 < 8 per truth pixel, alpha
included), strict accuracy (0 when the size is wrong), palette-count error and median
seconds per image (the timing table adds the 95th percentile). Peers (proper-pixel-art,
unfake, ai2pixelart, perfect-pixel, pixel-snapper) run through the scorer's own worker
processes when they are installed in the interpreter running this script; our engine
runs in-process, timed the same way (image loaded and package imported before the clock
starts). Results go to bench/results/pixel_recovery.json.

--split even|odd: only the cases at even (odd) positions of the manifest: tune on one
half, report the other (held out).

--pairs DIR: DIR/in/<stem>.* are inputs, DIR/gt/<stem>.png the truths. An RGB input is
scored as a flat-background case with the background colour taken from its border.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OURS = "dgx_pixels"
PEERS = ["proper_pixel_art", "unfake", "ai2pixelart", "perfect_pixel", "pixel_snapper"]
DEV_SET = REPO / ".." / "shared" / "bench" / "pixel-dev"


def load_scorer(dataset: Path):
    """Import the official score.py as module `score` (workers re-import it): the dataset's
    own, else the dev set's (the hard set is scored by the dev set's scorer)."""
    for folder in (dataset, DEV_SET.resolve()):
        if (folder / "score.py").is_file():
            sys.path.insert(0, str(folder))
            return importlib.import_module("score")
    sys.exit(f"no score.py in {dataset} or {DEV_SET}: pass --dataset (the dev set folder)")


def timing_table(results: list[dict]) -> str:
    """Median and 95th percentile of the seconds per image of every method."""
    lines = ["| method | n | s/img median | s/img p95 |", "|---|---|---|---|"]
    for r in results:
        t = np.array([row["seconds"] for row in r["cases"] if row.get("error") is None] or [np.nan])
        lines.append(f"| {r['method']} | {len(r['cases'])} | {np.median(t):.3f} | {np.percentile(t, 95):.3f} |")
    return "\n".join(lines)


def pairs_manifest(pairs: Path) -> dict:
    """A manifest-like dict for a folder of (input, truth) pairs matched by file stem."""
    gts = {p.stem: p for p in (pairs / "gt").glob("*.png")}
    cases = []
    for p in sorted((pairs / "in").iterdir()):
        if p.stem not in gts or not p.is_file():
            continue
        im = Image.open(p)
        has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        bg: dict = {"mode": "rgba"}
        if not has_alpha:
            rgb = np.asarray(im.convert("RGB"))
            ring = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
            bg = {"mode": "flat", "colour": [int(v) for v in np.median(ring, axis=0)]}
        gt = Image.open(gts[p.stem])
        cases.append({"id": p.stem, "kind": "pair", "input": str(p.relative_to(pairs)),
                      "gt": str(gts[p.stem].relative_to(pairs)), "width": gt.width, "height": gt.height,
                      "input_width": im.width, "input_height": im.height, "recipe": {"background": bg}})
    if not cases:
        sys.exit(f"no pairs found: expected {pairs}/in/<stem>.* and {pairs}/gt/<stem>.png")
    return {"name": f"pairs from {pairs}", "cases": cases}


def run_ours(score, manifest: dict, data: Path, ids: set[str] | None, limit: int, quiet: bool,
             save_dir: Path | None) -> dict:
    from pipelines.pixel import pixelate

    cases = [c for c in manifest["cases"] if not ids or c["id"] in ids]
    if limit:
        cases = cases[:limit]
    rows, t_start = [], time.time()
    for case in cases:
        gt = np.asarray(Image.open(data / case["gt"]).convert("RGBA"))
        img = Image.open(data / case["input"])
        img.load()
        t0 = time.perf_counter()
        try:
            out = np.asarray(pixelate(img).image.convert("RGBA"), dtype=np.uint8)
            dt = time.perf_counter() - t0
            row = {"id": case["id"], "error": None, "seconds": round(dt, 4), **score_case(score, out, gt, case)}
            if save_dir:
                Image.fromarray(out, "RGBA").save(save_dir / f"{case['id']}.png")
        except Exception as e:  # one bad case must not stop the run
            dt = time.perf_counter() - t0
            row = score.error_row(case, gt, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}", dt)
        rows.append(row)
        if not quiet:
            msg = row["error"].splitlines()[0] if row["error"] else (
                f"{row['out_w']}x{row['out_h']} acc={row['pixel_acc']:.3f} pal={row['palette_err']}")
            print(f"  {OURS} {case['id']} {case['width']}x{case['height']} {dt:6.2f}s {msg}", flush=True)
    rows.sort(key=lambda r: r["id"])
    by_id = {c["id"]: c for c in manifest["cases"]}
    return {"method": OURS, "versions": {"python": sys.version.split()[0]}, "set": manifest.get("name"),
            "delta_e": score.DELTA_E, "wall_s": round(time.time() - t_start, 1),
            "summary": score.summarise(rows), "breakdown": safe_breakdown(score, rows, by_id), "cases": rows}


def score_case(score, out: np.ndarray, gt: np.ndarray, case: dict) -> dict:
    return score.score_output(out, gt, case)


def safe_breakdown(score, rows: list[dict], cases: dict) -> dict:
    try:
        return score.breakdown(rows, cases)
    except KeyError:  # --pairs: no grid / degradation metadata
        return {}


def subset_table(results: list[dict]) -> str:
    keys = [("cell<=16px", "cell ≤ 16 px"), ("cell=16-32px", "cell 16–32 px"), ("cell>32px", "cell > 32 px"),
            ("kind=sprite", "sprites"), ("kind=tile", "tiles"), ("kind=region", "regions")]
    keys = [(k, label) for k, label in keys if any(k in r.get("breakdown", {}) for r in results)]
    if not keys:
        return ""
    head = " | ".join(f"{label} ({next(r['breakdown'][k]['n'] for r in results if k in r['breakdown'])})"
                      for k, label in keys)
    lines = [f"| method | {head} |", "|" + "---|" * (len(keys) + 1)]
    for r in results:
        cells = []
        for k, _ in keys:
            b = r.get("breakdown", {}).get(k)
            cells.append("-" if not b else f"{b['strict_acc_mean']:.3f} ({b['size_ok_pct']:.0f}%)")
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_tables(score, results: list[dict]) -> None:
    print(score.table(results))
    sub = subset_table(results)
    if sub:
        print("\nstrict acc (size ok %) by cell size and kind:\n" + sub)
    if all(r.get("breakdown") for r in results):
        print("\nsize_ok % / mean pixel acc per subset:\n" + score.breakdown_table(results))
    print("\noutput size vs truth (cases):\n" + score.size_class_table(results))
    print("\ntimes (s/img, this run's machine):\n" + timing_table(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="../shared/bench/pixel-dev",
                    help="dataset folder with manifest.json (relative to the repo root): the dev set or the hard set")
    ap.add_argument("--pairs", help="score on a folder with in/ and gt/ instead of the dev set")
    ap.add_argument("--methods", nargs="*", default=None,
                    help=f"any of {OURS} {' '.join(PEERS)} (default: ours + every installed peer)")
    ap.add_argument("--ids", nargs="*", help="only these case ids")
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases")
    ap.add_argument("--split", choices=["even", "odd"], help="only the cases at even / odd manifest positions")
    ap.add_argument("--jobs", type=int, default=1, help="peer images in parallel (default 1)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per peer image")
    ap.add_argument("--out", default=str(REPO / "bench/results/pixel_recovery.json"), help="results JSON")
    ap.add_argument("--save-outputs", metavar="DIR", help="also write our output PNGs to DIR")
    ap.add_argument("--table", metavar="JSON", help="only re-print the tables of a saved results JSON")
    ap.add_argument("--reuse", metavar="JSON", help="take the results of methods found in this saved JSON "
                    "(e.g. a long peer run) instead of running them again")
    ap.add_argument("--fresh", nargs="*", default=[], help="methods to run even when --reuse holds them "
                    "(e.g. perfect_pixel, whose time is compared with ours in the same run)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    dataset = Path(args.dataset)
    if not dataset.is_absolute():
        dataset = (REPO / dataset).resolve()
    score = load_scorer(dataset)
    if args.table:
        print_tables(score, json.loads(Path(args.table).read_text())["results"])
        return
    if args.pairs:
        data = Path(args.pairs).resolve()
        manifest = pairs_manifest(data)
    else:
        data = dataset
        manifest = json.loads((data / "manifest.json").read_text())
    methods = args.methods if args.methods is not None else [OURS] + [p for p in PEERS if score.installed(p)]
    for m in methods:
        if m != OURS and m not in PEERS:
            sys.exit(f"unknown method {m!r}: choose from {OURS} {' '.join(PEERS)}")
        if m in PEERS and not score.installed(m):
            sys.exit(f"{m} is not installed in this interpreter: pip install {score.PEER_PACKAGES[m]}")
    ids = set(args.ids) if args.ids else None
    if args.limit:
        first = [c["id"] for c in manifest["cases"] if not ids or c["id"] in ids][: args.limit]
        ids = set(first)
    if args.split:
        half = [c["id"] for i, c in enumerate(manifest["cases"]) if i % 2 == (0 if args.split == "even" else 1)]
        ids = set(half) & ids if ids else set(half)
    save_dir = Path(args.save_outputs) if args.save_outputs else None
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reused = {}
    if args.reuse:
        reused = {r["method"]: r for r in json.loads(Path(args.reuse).read_text())["results"]
                  if r["method"] not in args.fresh}
    results = []
    for m in methods:
        print(f"== {m}", flush=True)
        if m in reused:
            print(f"   (results reused from {args.reuse})")
            r = dict(reused[m])
            if ids:  # the same cases as this run
                r["cases"] = [row for row in r["cases"] if row["id"] in ids]
                r["summary"] = score.summarise(r["cases"])
                r["breakdown"] = safe_breakdown(score, r["cases"], {c["id"]: c for c in manifest["cases"]})
            results.append(r)
        elif m == OURS:
            results.append(run_ours(score, manifest, data, ids, args.limit, args.quiet, save_dir))
        else:
            sargs = argparse.Namespace(ids=list(ids) if ids else None, limit=args.limit, timeout=args.timeout,
                                       jobs=args.jobs, save_outputs=None, quiet=args.quiet)
            try:
                results.append(score.run_and_score((m, m, None), manifest, data, sargs))
            except KeyError:  # --pairs: the scorer's breakdown needs dev-set metadata
                sys.exit(f"{m}: peers can only be run on the dev set by this script")
        out.write_text(json.dumps({"set": manifest.get("name"), "results": results}, indent=1) + "\n")
    print()
    print_tables(score, results)
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
