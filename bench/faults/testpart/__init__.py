"""The fault suite's test part: cases no rule or threshold of diagnose is tuned on.

One module per family of :data:`bench.faults.TEST_FAMILIES`, registered with
``@case(family=..., part="test", ...)``. The cases and their expected ids were
written before the rules they exercise changed; they are scored as they come
(``python bench/fault_suite.py --part test``), and a rule is never adjusted to a
case here. A case that fails for a reason its expected ids do not name is a
finding about diagnose, to be fixed by what the rule measures, not by the case.
"""
