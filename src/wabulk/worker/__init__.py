"""The worker: drains the queue through one sending account (the loop, account trouble, runner, fleet)."""
