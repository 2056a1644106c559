"""The question's MemN2N written as its author would in Keras, studied with ``diagnose run-ablation``."""
