"""Progress lines through the `emoe` logger (so into Hydra's train.log and onto the console):
where the run is, how its loss goes and when it should end, readable from a batch job's log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("emoe")


class Progress:
    """A line every `every` optimiser steps (0: none) and one at the end of each epoch.

    Step lines give the mean loss of the batches since the previous line; epoch lines give
    the epoch's mean loss (its `train_loss` in results.json) and the ID score when the epoch
    ended with an evaluation. The ETA extrapolates the time per step this process has seen
    so far, evaluations included.
    """

    def __init__(self, total_steps: int, num_epochs: int, every: int, first_step: int,
                 enabled: bool = True, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.num_epochs, self.every = total_steps, num_epochs, every or 0
        self.first_step, self.enabled, self.clock = first_step, enabled, clock
        self.started = clock()
        self.loss_sum, self.batches = 0.0, 0

    def batch(self, loss: float) -> None:
        self.loss_sum += loss
        self.batches += 1

    def step(self, step: int, epoch: int, lr: float, epoch_ends: bool) -> None:
        """After optimiser step `step`; the epoch's own line follows when it `epoch_ends`."""
        if not self.every or step % self.every or epoch_ends:
            return
        loss = self.loss_sum / max(self.batches, 1)
        self.loss_sum, self.batches = 0.0, 0
        self._line(f"step {step}/{self.total} (epoch {epoch + 1}/{self.num_epochs}) | "
                   f"loss {loss:.4f} | lr {lr:.3g}", step)

    def evaluated(self, step: int, score: float, best: tuple[float, int, int]) -> None:
        """An evaluation inside an epoch (`trainer.eval_every_steps`); `best`: the best
        evaluation's score, epoch and step."""
        self._line(f"step {step}/{self.total} evaluated | ID score {score:.4f} "
                   f"(best {best[0]:.4f} at step {best[2]})", step)

    def epoch_end(self, step: int, epoch: int, epoch_loss: float, lr: float,
                  score: float | None, best: tuple[float, int, int] | None) -> None:
        """`score`: the ID score when the epoch ended with an evaluation."""
        self.loss_sum, self.batches = 0.0, 0
        scored = ("" if score is None else
                  f" | ID score {score:.4f} (best {best[0]:.4f}, epoch {best[1]})")
        self._line(f"epoch {epoch + 1}/{self.num_epochs} done | step {step}/{self.total} | "
                   f"epoch loss {epoch_loss:.4f} | lr {lr:.3g}{scored}", step)

    def _line(self, text: str, step: int) -> None:
        if not self.enabled:
            return
        elapsed = self.clock() - self.started
        done = step - self.first_step
        eta = (clock_text(elapsed * (self.total - step) / done) if done > 0 else "?")
        log.info("%s | elapsed %s | ETA %s", text, clock_text(elapsed), eta)


def clock_text(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
