"""Running experiments: benchmark cells, sweeps on the development split, where they run, how they are filed."""
