"""Adversarial probes (tech report 5.1): attacks on a differentiable detector, and the probe command."""
