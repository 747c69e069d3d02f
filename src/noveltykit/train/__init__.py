"""Training loops, checkpoints and stabilisers, apart from the networks they train."""
