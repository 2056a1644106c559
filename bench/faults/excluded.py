"""Real bug reports kept out of the fault suite, both parts, so that they stay held out for evaluation.

The Stack Overflow questions of the DeepLocalize benchmark (Wardat, Le and Rajan,
ICSE 2021), on which DeepFD, UMLAUT and DeepDiagnosis were also scored, check
diagnose on bugs nobody wrote a rule for; porting one here would spend it.
``tests/test_fault_suite.py`` checks that no case cites one.
"""

__all__ = ["EXCLUDED_POSTS"]

# Stack Overflow question ids.
EXCLUDED_POSTS: frozenset[int] = frozenset({
    # DeepLocalize (Wardat-ISU/DeepLocalize, Benchmark/StackOverflow/<id>/): all 30 question folders.
    31556268, 31627380, 31880720, 33969059, 34311586, 34673164, 38648195, 39217567, 39525358, 41372874,
    44066044, 44164749, 45337371, 45442843, 47352366, 47724077, 48221692, 48251943, 48385830, 48594888,
    48934338, 50079585, 50306988, 50481178, 51930566, 52800582, 55328966, 58609115, 59278771, 59325381,
    # DeepFD (ArabelaTso/DeepFD, Benchmark/Subjects/<id>/): the two subjects stored as text, 31556268 (above)
    # and 59282996; its full list is in Benchmark/Benchmark-with-patches.xlsx, which could not be read here.
    59282996,
    # DeepDiagnosis (DeepDiagnosis/ICSE2022): the one question its repository names, 31880720 ("MOTIVATING
    # EXAMPLE/31880720/"), is above; its other real-world models are listed only in "Table 6/Table 6.xlsx", unread.
})
