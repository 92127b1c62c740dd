//! Far tier: a memcached client.

mod ring;

pub use ring::Distribution;
