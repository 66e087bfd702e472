"""What a run leaves behind: results.json records, the run summary, the metrics CSV and the
experiment trackers (wandb, tensorboard, mlflow) that mirror them."""
