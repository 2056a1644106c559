"""Instruments: what explains convergence, measured inside the compiled train step.

``measures`` holds the in-graph functions; the training path records them every
step and writes interval means to the run record (see :mod:`diagnose.runrecord`).
"""
