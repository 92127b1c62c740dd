//! Far tier: a memcached client.

mod error;
pub mod protocol;

pub use error::{ConfigError, Error, Result};
