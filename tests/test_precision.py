"""`trainer.precision=bf16` trains and evaluates under bf16 autocast, on CPU too."""

import json

import pytest
import torch
from accelerate.state import AcceleratorState

from emoe_cli.cli.train import run
from emoe_cli.moe.layer import EMoEFeedForward
from tests.helpers import compose_config


@pytest.mark.slow
def test_bf16_run_trains_and_evaluates_under_autocast(shared_data, minilm_path, tmp_path,
                                                      monkeypatch):
    seen = []  # (training?, autocast dtype or None) of every EMoE layer call
    forward = EMoEFeedForward.forward

    def recording_forward(self, hidden_states):
        device = hidden_states.device.type
        seen.append((self.training, torch.get_autocast_dtype(device)
                     if torch.is_autocast_enabled(device) else None))
        return forward(self, hidden_states)

    monkeypatch.setattr(EMoEFeedForward, "forward", recording_forward)
    overrides = ["experiment=quickstart", "debug=fast", f"data.root={shared_data}",
                 "data.max_train_samples=8", "data.max_eval_samples=4", "task.ood=[yelp]",
                 "trainer.batch_size=4", "model.max_length=16", "trainer.precision=bf16",
                 "trainer.device=cpu"]
    try:
        run(compose_config(overrides), tmp_path)
    finally:  # the accelerator's precision is process-wide: give later runs a fresh one
        AcceleratorState._reset_state(reset_partial_state=True)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "completed"
    for result in (record["id"], record["ood"]["yelp"]):
        assert 0.0 <= result["metrics"]["accuracy"] <= 1.0 and result["num_examples"] == 4
    assert {training for training, _ in seen} == {True, False}
    first_step = next(i for i, (training, _) in enumerate(seen) if training)
    # before it only the conversion receipt ran (an fp32 check of k = N against dense)
    assert {dtype for _, dtype in seen[first_step:]} == {torch.bfloat16}
    assert any(not training for training, _ in seen[first_step:])  # evaluation in bf16 too
