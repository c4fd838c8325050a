//! Helpers shared by the integration suites in `tests/tests/`.
