"""Where the studio is put together: the core's services, then the features on top of them.

Why one place: the core (`studio.core`, its queue, store, registry and manager) knows nothing of Compare,
datasets or training; the features know the core. Something has to build both and connect them (Compare's
job kinds on the queue, training's claim on the GPU), and that is this module, the composition root every
front end starts from: the web server, the CLI, the benchmarks and the tests.
"""

from __future__ import annotations

from studio.core import Studio
from studio.features import training_runs
from studio.features.benchmarks.run import Benchmarks
from studio.features.compare import Arena
from studio.features.prometheus import Exporter
from studio.settings import Settings


class App:
    """The studio as the front ends see it: the core (`studio`) and the features that keep state (`arena`,
    `benchmarks`, the `prometheus` exporter).

    Features without state (datasets, training runs, workflows, export) are modules of functions that take
    `app.studio`; they need no object here.
    """

    def __init__(self, settings: Settings):
        self.studio = Studio(settings)
        try:
            self.arena = Arena(self.studio)
            self.studio.queue.add_runners(self.arena.runners())
            self.benchmarks = Benchmarks(self.studio, open_app=App)  # a run measures a scratch App of its own
            self.studio.queue.add_runners(self.benchmarks.runners())
            self.studio.queue.add_hold(lambda: training_runs.hold_reason(self.studio))
            self.prometheus = Exporter(self.studio)
        except BaseException:
            self.studio.close()
            raise

    @property
    def settings(self) -> Settings:
        return self.studio.settings

    def close(self) -> None:
        self.studio.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
