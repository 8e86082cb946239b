//! Small legacy PC devices on port I/O.

pub mod i8042;
pub mod test_report;
