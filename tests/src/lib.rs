//! Shared harness for Revenant's integration tests.
