//! Engine tests through the byte-level dispatcher, with a scripted port that lets each test
//! deliver KTM notifications itself (the full KTM model lives in ktm-sim).

mod alloc_failure;
mod durable;
mod fuzz;
mod model;
mod phases;
mod semantics;
mod serializable;
mod visibility;
