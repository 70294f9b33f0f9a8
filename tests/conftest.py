"""Test options: ``--algorithm module:Class`` runs the algorithm contract tests against your own class."""


def pytest_addoption(parser):
    parser.addoption("--algorithm", action="append", default=[],
                     help="run tests/test_contract.py against this algorithm (registered name, entry point or "
                          "module:Class); repeatable; default: every registered algorithm")
