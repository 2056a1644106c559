"""Real bug reports kept out of the fault suite, both parts, so that they stay held out for evaluation.

The Stack Overflow questions of the DeepLocalize benchmark (Wardat, Le and Rajan,
ICSE 2021), on which DeepFD, UMLAUT and DeepDiagnosis were also scored, check
diagnose on bugs nobody wrote a rule for; porting one here would spend it.
``tests/test_fault_suite.py`` checks that no case cites one.
"""

__all__ = ["EXCLUDED_POSTS"]

# Stack Overflow question ids.
EXCLUDED_POSTS: frozenset[int] = frozenset()
