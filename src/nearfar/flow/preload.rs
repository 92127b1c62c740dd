//! The key preload's far read ([`Batch`]): one `get_many` of a batch of
//! keys (see `warm.rs`, which keeps what it finds near).

use std::collections::HashMap;

use super::{FarOp, Flow, Input, Next, unexpected};

/// Reads a batch of far keys at once. Its result: the values found, by far
/// key; `None` when the request failed or was skipped (breaker open): the
/// preload stops there rather than keep a failing far tier busy.
#[derive(Debug)]
pub(in crate::nearfar) struct Batch<'k> {
    keys: &'k [String],
    asked: bool,
}

impl<'k> Batch<'k> {
    pub(in crate::nearfar) fn new(keys: &'k [String]) -> Self {
        Batch { keys, asked: false }
    }
}

impl<V> Flow<V> for Batch<'_> {
    type Out = Option<HashMap<String, V>>;

    fn advance(&mut self, input: Input<V>, _now: u64) -> Next<Self::Out> {
        match (self.asked, input) {
            (false, Input::Start) => {
                self.asked = true;
                Next::Far
            }
            (true, Input::Far(reply)) => Next::Done(reply.many().ok().flatten()),
            _ => unexpected("Batch"),
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        FarOp::GetMany { keys: self.keys }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{FarReply, Flow, Input, Next};
    use super::Batch;
    use crate::nearfar::call::Failure;

    #[test]
    fn a_batch_asks_once_and_gives_its_hits_or_nothing() {
        let keys = vec!["a".to_string(), "b".to_string()];
        let mut batch = Batch::new(&keys);
        assert_eq!(Flow::<u32>::advance(&mut batch, Input::Start, 0), Next::Far);
        let found = HashMap::from([("a".to_string(), 1u32)]);
        let done = batch.advance(Input::Far(FarReply::Many(Ok(Some(found.clone())))), 0);
        assert_eq!(done, Next::Done(Some(found)));

        for reply in [Ok(None), Err(Failure::Owed)] {
            let mut batch = Batch::new(&keys);
            assert_eq!(Flow::<u32>::advance(&mut batch, Input::Start, 0), Next::Far);
            let done = batch.advance(Input::Far(FarReply::<u32>::Many(reply)), 0);
            assert_eq!(done, Next::Done(None));
        }
    }
}
