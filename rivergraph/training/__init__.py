"""Learning parameters through the router: losses, gauge batches, the trainer, twin experiments."""
