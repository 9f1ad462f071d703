"""youtu.train: pre-/mid-training and SFT on one trainer core (trainer.py: step, precision, clip,
optimizer), loop.py (`youtu train`), sft.py, schedule, checkpoint, parallel (FSDP2), metrics.
RL (`youtu.rl`) runs the same step pieces; evaluation reaches training only as a callback."""
