//! Value codecs.
