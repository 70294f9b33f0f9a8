"""Test options: ``--algorithm module:Class`` runs the algorithm contract tests against your own class.

Ctrl-C is restored to Python's default for the session: a shell that starts the suite in the background
(``make test &``) hands it SIGINT ignored, which every subprocess would inherit, and the interruption
tests would then measure the shell, not nsdml.
"""

import signal

signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption("--algorithm", action="append", default=[],
                     help="run tests/test_contract.py against this algorithm (registered name, entry point or "
                          "module:Class); repeatable; default: every registered algorithm")
