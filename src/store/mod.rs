//! Near tier.
