"""Helpers shared by the test suites: each module is owned by one area."""
