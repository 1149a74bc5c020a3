"""Few-step modes: seconds per sprite and steps/s, 30-step DPM++ 2M Karras vs 4-step Lightning (trailing Euler).

    .venv/bin/python bench/samplers.py [--repeats 5] [--size 128] [--model NAME]

On the tiny demo model only the ratio means anything (a step costs the same whatever the sampler, so 4 steps
take about 4/30 of the time); the quality of a distilled model's 4 steps needs real weights. The studio's
own queue runs every job, as the UI would, and the median of interleaved repeats is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from studio.core import Studio  # noqa: E402
from studio.params import GenerateParams  # noqa: E402
from studio.settings import Settings  # noqa: E402

MODES = {"DPM++ 2M Karras, 30 steps": {"sampler": "DPM++ 2M Karras", "steps": 30, "guidance": 6.0},
         "Lightning, 4 steps": {"sampler": "Lightning", "steps": 4, "guidance": 0.0}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", help="a checkpoint in models/ (default: the demo model in a temporary folder)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "samplers.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        models = ROOT / "models" if args.model else Path(tmp) / "models"
        with Studio(Settings(data_dir=Path(tmp) / "data", models_dir=models, model=args.model)) as studio:
            times: dict[str, list[float]] = {name: [] for name in MODES}
            for i in range(args.repeats + 1):  # the first round warms up and is not counted
                for name, mode in MODES.items():  # interleaved, so a busy neighbour slows both alike
                    params = GenerateParams(prompt="a red slime, pixel art", seed=i, width=args.size,
                                            height=args.size, **mode)
                    t = time.perf_counter()
                    studio.generate(params)
                    if i:
                        times[name].append(time.perf_counter() - t)
            model = studio.default_model
    rows = {name: {"s_per_sprite": round(statistics.median(t), 4),
                   "steps_per_s": round(MODES[name]["steps"] / statistics.median(t), 2)} for name, t in times.items()}
    slow, fast = (rows[n]["s_per_sprite"] for n in MODES)
    result = {"model": model, "size": args.size, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "modes": rows, "speedup": round(slow / fast, 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, row in rows.items():
        print(f"{name:28} {row['s_per_sprite']:.3f} s/sprite  {row['steps_per_s']:.1f} steps/s")
    print(f"speed-up {result['speedup']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
