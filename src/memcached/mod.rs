//! Far tier: a memcached client.

mod error;
pub mod protocol;
mod ring;

pub use error::{ConfigError, Error, Result};
pub use ring::Distribution;
