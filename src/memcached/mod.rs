//! Far tier: a memcached client.
