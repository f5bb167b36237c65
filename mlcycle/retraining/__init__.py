"""The retraining controller: every trigger (monitor findings, new labelled data, the schedule) goes
through its guards (single flight, cooldown, new labelled rows, a daily budget) before a training run
starts, and the reason is recorded with the run."""
