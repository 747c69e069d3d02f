"""Plain nn.Modules: no training logic lives here."""
