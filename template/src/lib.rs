//! Snapshot/template format, copy-on-write fork and resize plans.
