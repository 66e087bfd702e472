from emoe_cli.tracking.summary import summary_table

RECORD = {"task": "sst2", "model": "minilm", "method": "emoe", "seed": 0, "status": "completed",
          "id": {"split": "validation", "metrics": {"accuracy": 0.9}, "score": 0.9},
          "ood": {}, "timing": {"convert": 1.0}}


def test_summary_shows_what_conversion_kept_at_the_chosen_k():
    receipt = {"max_abs_diff": 1e-6, "top_k": 16, "kept_share": {"2": 0.412, "4": 0.388},
               "hidden_mean_cosine": 0.9012, "hidden_worst_cosine": 0.7204,
               "hidden_relative_l2": 0.4321}
    text = summary_table({**RECORD, "conversion_receipt": receipt}, "results.json")
    line = next(line for line in text.splitlines() if line.startswith("conversion at k=16"))
    assert "layer 2 0.41, layer 4 0.39" in line
    assert "cosine 0.901 mean, 0.720 worst, relative L2 0.432" in line


def test_dense_runs_and_older_records_have_no_receipt_line():
    assert "conversion at" not in summary_table(RECORD, "results.json")
    old = {**RECORD, "conversion_receipt": {"max_abs_diff": 0.0, "tolerance": 1e-3}}
    assert "conversion at" not in summary_table(old, "results.json")
