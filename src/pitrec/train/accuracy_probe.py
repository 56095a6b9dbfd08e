"""Time to accuracy: the seconds a run takes from its raw files to a model whose *test* metric
reaches a target (issue 6 asks it of PIT on beauty: NDCG@10 .0384 within 20 minutes, embeddings
included; ``shared/design/architecture.md`` names the figure ``time_to_accuracy_s``).

The target is a test figure (the TIGER paper's), so the test split has to be looked at during
training. That is why this belongs only to runs made to measure speed (``eval.accuracy_target``
above 0): it never selects a model. The best-validation checkpoint is still the one tested at the
end, and what the probe finds changes nothing the run trains. The one exception is
``eval.stop_at_target``, which ends training once the target is reached, because the question has
been answered.

The clock starts when the run starts (before the data files are read) and runs through data
loading, the stages (embeddings, SID table) unless they come from the caches, training and
validation. The probes' own evaluations are taken off: a run that did not measure would not spend
that time. A resumed run adds its own time to what the interrupted one had on the clock at its last
checkpoint. Work lost after that checkpoint is not counted, and the new process's loading time is.
"""

from __future__ import annotations

import time
from typing import Any

from pitrec.eval.evaluator import Evaluator

# what the probe keeps in the trainer's state (and so in every checkpoint)
PROBE_STATE = {"pipeline_seconds": 0.0, "probe_best": None, "probe_best_seconds": None, "probe_best_epoch": None,
               "time_to_accuracy_s": None, "accuracy_epoch": None}


class AccuracyProbe:
    def __init__(self, cfg, evaluator: Evaluator, clock_start: float | None = None):
        self.target = float(cfg.eval.accuracy_target)
        self.metric = cfg.eval.accuracy_metric
        self.stop_at_target = cfg.eval.stop_at_target
        self.evaluator = evaluator
        self._start = clock_start if clock_start is not None else time.perf_counter()
        self._earlier = 0.0  # pipeline seconds of the processes before a resume
        self._probing = 0.0  # this process's seconds spent in probes

    @property
    def enabled(self) -> bool:
        return self.target > 0

    def resumed(self, state: dict[str, Any]) -> None:
        """Continue the clock of the run whose checkpoint ``state`` came from."""
        self._earlier = float(state.get("pipeline_seconds") or 0.0)

    def pipeline_seconds(self) -> float:
        return self._earlier + time.perf_counter() - self._start - self._probing

    def probe(self, ranker, state: dict[str, Any], epoch: int, progress: bool = False) -> tuple[dict[str, Any], bool]:
        """Evaluate the test split with the model as it is now; update ``state``. Returns the log
        record's ``test_probe`` entry and whether training should stop (target reached, and
        ``stop_at_target``)."""
        at = self.pipeline_seconds()
        began = time.perf_counter()
        test = self.evaluator.evaluate(ranker, "test", progress=progress)
        spent = time.perf_counter() - began
        self._probing += spent
        return self._record(float(test[self.metric]), at, spent, state, epoch)

    def untrained(self, test: dict[str, Any], at: float, state: dict[str, Any]) -> None:
        """A method with nothing to train (popularity, content kNN) is never probed: its final test,
        which began ``at`` pipeline seconds, is its time to accuracy."""
        self._record(float(test[self.metric]), at, 0.0, state, 0)
        state["pipeline_seconds"] = at

    def _record(self, value: float, at: float, spent: float, state: dict[str, Any], epoch: int
                ) -> tuple[dict[str, Any], bool]:
        if state["probe_best"] is None or value > state["probe_best"]:
            state.update(probe_best=value, probe_best_seconds=at, probe_best_epoch=epoch)
        reached = value >= self.target
        if reached and state["time_to_accuracy_s"] is None:
            state.update(time_to_accuracy_s=at, accuracy_epoch=epoch)
        return {self.metric: value, "pipeline_seconds": at, "probe_seconds": spent}, reached and self.stop_at_target

    def result(self, state: dict[str, Any]) -> dict[str, Any]:
        """The keys a run's ``test_metrics.json`` gets (the bench carries them into results)."""
        return {"accuracy_target": self.target, "accuracy_metric": self.metric,
                "time_to_accuracy_s": state["time_to_accuracy_s"], "accuracy_epoch": state["accuracy_epoch"],
                "probe_best": state["probe_best"], "probe_best_seconds": state["probe_best_seconds"],
                "probe_best_epoch": state["probe_best_epoch"], "pipeline_seconds": state["pipeline_seconds"]}
