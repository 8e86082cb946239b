//! ACPI tables, sleep states (S0/S3/S4/S5/Sz) and the power/energy model.
