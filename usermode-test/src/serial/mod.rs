//! A serializability checker that knows nothing of the engine: random interleavings of a few
//! transactions over a few keys run through the client ([`history`]), then a search over the
//! orders of the committed transactions for one that, run one after another from the same
//! start, gives every answer they got and the final store ([`check`]).
//!
//! A history the checker rejects prints as a script (`ktmrm-test script`), so it replays.

pub mod check;
pub mod history;

pub use check::{NotSerializable, serial_order};
pub use history::{Event, History, Op, Outcome, Plan, Step, TxRecord};
