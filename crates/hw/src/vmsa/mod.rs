//! VMSAv8-64 translation tables: descriptor formats and walks.
