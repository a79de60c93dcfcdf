"""Training: the G/D loop (`loop.py`), checkpoints, EMA, data schedule and DDP plumbing."""
