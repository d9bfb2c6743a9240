//! The columns of the table: one [`crate::Engine`] per way of running a
//! workload.

pub mod kernel;
