//! ktmrm client library: a safe Rust API over the ktmrm IOCTL ABI (`ktmrm-proto`), usable by
//! applications, plus the conformance harness behind the `ktmrm-test` binary.
//!
//! The same code runs against two transports behind one [`Transport`] trait, so what the suites
//! prove on Linux against the simulator is what runs on Windows against the driver:
//! - `transport::DeviceTransport` (Windows only): `\\.\KtmRm` through `DeviceIoControl`, KTM
//!   transactions from ktmw32;
//! - [`transport::SimTransport`] (every OS): the portable engine over the `ktm-sim` KTM model, in
//!   process, through the same request bytes.
//!
//! ```
//! use ktmrm_client::{Backend, Client};
//! # fn main() -> Result<(), ktmrm_client::Error> {
//! // `Backend::Device` opens the installed driver instead (Windows).
//! let client = Client::new(Backend::Sim(Default::default()).connect()?)?;
//! let mut tx = client.begin()?;
//! tx.put(b"greeting", b"hello")?;
//! tx.commit()?;
//! assert_eq!(client.get(b"greeting")?, b"hello");
//! // A transaction dropped without commit is rolled back.
//! let tx = client.begin()?;
//! tx.put(b"greeting", b"bye")?;
//! drop(tx);
//! assert_eq!(client.get(b"greeting")?, b"hello");
//! # Ok(()) }
//! ```

pub mod client;
pub mod diff;
pub mod error;
pub mod replay;
pub mod script;
pub mod serial;
pub mod status;
pub mod suite;
pub mod transport;

pub use client::{Client, Transaction, TxSource};
pub use error::Error;
pub use ktmrm_proto as proto;
pub use ktmrm_proto::NtStatus;
pub use transport::{Backend, Transport, TransportKind};
