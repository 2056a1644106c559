"""A small MLP killed by its learning rate, checked and proven: ``python -m examples.dead_relus``."""
