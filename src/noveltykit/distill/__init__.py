"""Progressive knowledge distillation between GANs (P-KDGAN)."""
from .distillation import PLAN_NAMES, STRUCTURES, DistillConfig, distillation_loss, parse_structure, train_distill

__all__ = ["PLAN_NAMES", "STRUCTURES", "DistillConfig", "distillation_loss", "parse_structure", "train_distill"]
