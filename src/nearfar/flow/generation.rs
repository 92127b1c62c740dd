//! The namespace's generation counter (see `NearFar::invalidate_all`):
//! one memcached item per namespace holding a decimal number. Far keys of
//! generation `g > 0` carry it (`namespace:#g<g>:key`), so bumping it makes
//! every process read and write other far items, and the old ones are never
//! read again.
//!
//! [`Check`] reads it (what a process does at most once per
//! `generation_check`); [`Bump`] increments it (`invalidate_all`). Both
//! keep the counter from going back: a process never goes back to an older
//! generation, and a counter found lost (evicted, flushed, or on a server
//! replaced by another) or lower than the generation the process knows is
//! put back to it, so that processes that start meanwhile do not go back
//! either (see [`Check`]).

use super::{FarOp, Flow, Input, Next, unexpected};
use crate::nearfar::InvalidateError;
use crate::nearfar::call::Failure;
use crate::nearfar::stats::{Counters, bump};

/// How many times [`Bump`] increments again after finding the counter
/// missing and losing the race to create it (another process created it
/// first: its increment then succeeds).
pub(in crate::nearfar) const BUMP_TRIES: u32 = 3;

/// The counter's number in `bytes`: decimal, maybe followed by the spaces
/// memcached pads a shrunken number with.
pub(in crate::nearfar) fn parse_counter(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim_end().parse().ok()
}

/// Reads the generation counter: its result is the generation to go on
/// with, `None` when the far tier gave no answer (skipped by the breaker,
/// failed, or not a number: go on with what is known).
///
/// `known` is the generation the process uses (`None` before it knows
/// one). A counter missing is generation 0 to a process that knows none
/// (a namespace never invalidated); to one that knows `g > 0` it is a
/// counter lost, which it creates again with `g` (by `add`: a bump
/// meanwhile wins). A counter lower than `g` is raised to it (by `incr`;
/// processes raising it together may overshoot: one more invalidation,
/// never one less).
#[derive(Debug)]
pub(in crate::nearfar) struct Check<'a> {
    counters: &'a Counters,
    key: &'a str,
    known: Option<u64>,
    state: CheckState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckState {
    Start,
    Reading,
    /// Raising the counter by this much, to the generation known.
    Raising(u64),
    /// Creating the lost counter with the generation known.
    Restoring(u64),
    Done,
}

impl<'a> Check<'a> {
    pub(in crate::nearfar) fn new(
        counters: &'a Counters,
        key: &'a str,
        known: Option<u64>,
    ) -> Self {
        Check {
            counters,
            key,
            known,
            state: CheckState::Start,
        }
    }

    fn read(&mut self, reply: super::Reply<Option<(Vec<u8>, u32)>>) -> Next<Option<u64>> {
        let known = self.known.unwrap_or(0);
        let found = match reply {
            Ok(Some(Some((bytes, _flags)))) => match parse_counter(&bytes) {
                Some(n) => n,
                None => {
                    bump(&self.counters.decode_errors);
                    return Next::Done(None);
                }
            },
            Ok(Some(None)) if known == 0 => return Next::Done(Some(0)),
            Ok(Some(None)) => {
                self.state = CheckState::Restoring(known);
                return Next::Far;
            }
            Ok(None) | Err(_) => return Next::Done(None),
        };
        if found < known {
            self.state = CheckState::Raising(known - found);
            return Next::Far;
        }
        Next::Done(Some(found))
    }
}

impl<V> Flow<V> for Check<'_> {
    type Out = Option<u64>;

    fn advance(&mut self, input: Input<V>, _now: u64) -> Next<Option<u64>> {
        let state = std::mem::replace(&mut self.state, CheckState::Done);
        match (state, input) {
            (CheckState::Start, Input::Start) => {
                self.state = CheckState::Reading;
                Next::Far
            }
            (CheckState::Reading, Input::Far(reply)) => self.read(reply.raw()),
            (CheckState::Raising(_), Input::Far(reply)) => {
                // Raised (maybe past `known`, by another process raising or
                // bumping it too: adopted at the next check), or gone, or
                // not answered: go on with the generation known.
                let known = self.known.unwrap_or(0);
                let raised = reply.counter().ok().flatten().flatten();
                Next::Done(Some(raised.map_or(known, |n| n.max(known))))
            }
            (CheckState::Restoring(known), Input::Far(_)) => Next::Done(Some(known)),
            _ => unexpected("Check"),
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        let key = self.key;
        match self.state {
            CheckState::Reading => FarOp::GetRaw { key },
            CheckState::Raising(delta) => FarOp::Incr { key, delta },
            CheckState::Restoring(value) => FarOp::AddCounter { key, value },
            _ => unexpected("Check"),
        }
    }
}

/// Bumps the generation counter (`invalidate_all`): its result is the new
/// generation, higher than `known` (the generation the process uses, if
/// it knows one), or why it could not be bumped.
///
/// `incr` by one; a counter lower than `known` (lost and created again
/// elsewhere) is raised past it; a missing one is created with `known + 1`
/// (1 for a process that knows none) by `add`, and if another process
/// created it first, incremented again (up to [`BUMP_TRIES`] times).
#[derive(Debug)]
pub(in crate::nearfar) struct Bump<'a> {
    key: &'a str,
    known: Option<u64>,
    tries: u32,
    state: BumpState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BumpState {
    Start,
    Incrementing,
    /// Raising the counter by `delta` to `target` (past the generation
    /// known).
    Raising {
        delta: u64,
        target: u64,
    },
    /// Creating the missing counter with this number.
    Creating(u64),
    Done,
}

/// The error of a far request `invalidate_all` made that was skipped
/// (`None`) or failed.
fn not_bumped(failure: Option<Failure>) -> InvalidateError {
    match failure {
        None => InvalidateError::Unavailable,
        Some(Failure::Owed) => InvalidateError::NoAnswer,
        Some(Failure::Refused | Failure::Codec) => InvalidateError::Refused,
    }
}

impl<'a> Bump<'a> {
    pub(in crate::nearfar) fn new(key: &'a str, known: Option<u64>) -> Self {
        Bump {
            key,
            known,
            tries: 0,
            state: BumpState::Start,
        }
    }

    fn increment(&mut self) -> Next<Result<u64, InvalidateError>> {
        self.tries += 1;
        self.state = BumpState::Incrementing;
        Next::Far
    }

    fn create(&mut self) -> Next<Result<u64, InvalidateError>> {
        let next = self.known.map_or(1, |k| k.saturating_add(1));
        self.state = BumpState::Creating(next);
        Next::Far
    }
}

impl<V> Flow<V> for Bump<'_> {
    type Out = Result<u64, InvalidateError>;

    fn advance(&mut self, input: Input<V>, _now: u64) -> Next<Self::Out> {
        let state = std::mem::replace(&mut self.state, BumpState::Done);
        let reply = match (state, input) {
            (BumpState::Start, Input::Start) => return self.increment(),
            (BumpState::Incrementing, Input::Far(reply)) => reply.counter(),
            (BumpState::Raising { target, .. }, Input::Far(reply)) => {
                return match reply.counter() {
                    Ok(Some(Some(n))) => Next::Done(Ok(n.max(target))),
                    Ok(Some(None)) => self.create(),
                    Ok(None) => Next::Done(Err(not_bumped(None))),
                    Err(f) => Next::Done(Err(not_bumped(Some(f)))),
                };
            }
            (BumpState::Creating(n), Input::Far(reply)) => {
                return match reply.done() {
                    Ok(Some(true)) => Next::Done(Ok(n)),
                    // Created by another process meanwhile: bump that one.
                    Ok(Some(false)) if self.tries < BUMP_TRIES => self.increment(),
                    Ok(Some(false)) => Next::Done(Err(InvalidateError::Refused)),
                    Ok(None) => Next::Done(Err(not_bumped(None))),
                    Err(f) => Next::Done(Err(not_bumped(Some(f)))),
                };
            }
            _ => unexpected("Bump"),
        };
        match reply {
            Ok(Some(Some(n))) => match self.known {
                // Lower than a generation already used: the counter was
                // lost and made again. Raise it past that generation, or
                // this bump would send processes back to older far items.
                Some(known) if n <= known => {
                    let target = known.saturating_add(1);
                    self.state = BumpState::Raising {
                        delta: target - n,
                        target,
                    };
                    Next::Far
                }
                _ => Next::Done(Ok(n)),
            },
            Ok(Some(None)) => self.create(),
            Ok(None) => Next::Done(Err(not_bumped(None))),
            Err(f) => Next::Done(Err(not_bumped(Some(f)))),
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        let key = self.key;
        match self.state {
            BumpState::Incrementing => FarOp::Incr { key, delta: 1 },
            BumpState::Raising { delta, .. } => FarOp::Incr { key, delta },
            BumpState::Creating(value) => FarOp::AddCounter { key, value },
            _ => unexpected("Bump"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FarReply, Step};
    use super::*;

    type In = Input<()>;

    fn raw(bytes: &[u8]) -> In {
        Input::Far(FarReply::Raw(Ok(Some(Some((bytes.to_vec(), 0))))))
    }

    fn counter(reply: super::super::Reply<Option<u64>>) -> In {
        Input::Far(FarReply::Counter(reply))
    }

    fn added(reply: super::super::Reply<bool>) -> In {
        Input::Far(FarReply::Done(reply))
    }

    /// Runs `flow` over `inputs` (after `Start`), checking the request of
    /// each step against `asked`, and returns its result.
    fn run<F: Flow<(), Out = O>, O: std::fmt::Debug>(
        flow: &mut F,
        steps: Vec<(FarOp<'static, ()>, In)>,
    ) -> O {
        let mut input = Input::Start;
        let mut steps = steps.into_iter();
        loop {
            match flow.resume(input, 0) {
                Step::Far(op) => {
                    let (asked, reply) = steps.next().expect("a step more than scripted");
                    assert_eq!(format!("{op:?}"), format!("{asked:?}"));
                    input = reply;
                }
                Step::Done(out) => {
                    assert!(steps.next().is_none(), "steps left unasked");
                    return out;
                }
                other => panic!("unexpected step {other:?}"),
            }
        }
    }

    const KEY: &str = "ns:#generation";
    const READ: FarOp<'static, ()> = FarOp::GetRaw { key: KEY };

    fn incr(delta: u64) -> FarOp<'static, ()> {
        FarOp::Incr { key: KEY, delta }
    }

    fn add(value: u64) -> FarOp<'static, ()> {
        FarOp::AddCounter { key: KEY, value }
    }

    #[test]
    fn a_check_reads_the_counter() {
        let c = Counters::default();
        let check = |known, reply| run(&mut Check::new(&c, KEY, known), vec![(READ, reply)]);
        assert_eq!(check(None, raw(b"4")), Some(4));
        assert_eq!(check(Some(4), raw(b"5")), Some(5));
        // memcached pads a number that shrank with spaces.
        assert_eq!(check(Some(2), raw(b"9   ")), Some(9));
        // Never invalidated: generation 0.
        let missing = || Input::Far(FarReply::Raw(Ok(Some(None))));
        assert_eq!(check(None, missing()), Some(0));
        assert_eq!(check(Some(0), missing()), Some(0));
        // No answer, or no number: go on with what is known.
        assert_eq!(check(Some(3), Input::Far(FarReply::Raw(Ok(None)))), None);
        let failed = Input::Far(FarReply::Raw(Err(Failure::Owed)));
        assert_eq!(check(Some(3), failed), None);
        assert_eq!(check(Some(3), raw(b"x")), None);
        assert_eq!(
            c.decode_errors.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn a_check_puts_a_lost_or_lower_counter_back() {
        let c = Counters::default();
        // Lost: created again with the generation known.
        let mut flow = Check::new(&c, KEY, Some(6));
        let missing = Input::Far(FarReply::Raw(Ok(Some(None))));
        let out = run(
            &mut flow,
            vec![(READ, missing), (add(6), added(Ok(Some(true))))],
        );
        assert_eq!(out, Some(6));
        // Lower (made again elsewhere): raised to it, never followed down.
        let mut flow = Check::new(&c, KEY, Some(6));
        let out = run(
            &mut flow,
            vec![(READ, raw(b"2")), (incr(4), counter(Ok(Some(Some(6)))))],
        );
        assert_eq!(out, Some(6));
        // Raised past it by someone else meanwhile: the higher one.
        let mut flow = Check::new(&c, KEY, Some(6));
        let out = run(
            &mut flow,
            vec![(READ, raw(b"2")), (incr(4), counter(Ok(Some(Some(8)))))],
        );
        assert_eq!(out, Some(8));
        // The raise unanswered: still the generation known.
        let mut flow = Check::new(&c, KEY, Some(6));
        let out = run(
            &mut flow,
            vec![(READ, raw(b"2")), (incr(4), counter(Ok(None)))],
        );
        assert_eq!(out, Some(6));
    }

    #[test]
    fn a_bump_increments_or_creates_the_counter() {
        let bump = |known, steps| run(&mut Bump::new(KEY, known), steps);
        assert_eq!(
            bump(Some(4), vec![(incr(1), counter(Ok(Some(Some(5)))))]),
            Ok(5)
        );
        assert_eq!(
            bump(None, vec![(incr(1), counter(Ok(Some(Some(9)))))]),
            Ok(9)
        );
        // Missing: created with the next generation.
        let missing = || counter(Ok(Some(None)));
        assert_eq!(
            bump(
                Some(0),
                vec![(incr(1), missing()), (add(1), added(Ok(Some(true))))]
            ),
            Ok(1)
        );
        assert_eq!(
            bump(
                Some(7),
                vec![(incr(1), missing()), (add(8), added(Ok(Some(true))))]
            ),
            Ok(8)
        );
        // Created by another process first: incremented instead.
        let raced = vec![
            (incr(1), missing()),
            (add(1), added(Ok(Some(false)))),
            (incr(1), counter(Ok(Some(Some(2))))),
        ];
        assert_eq!(bump(Some(0), raced), Ok(2));
    }

    #[test]
    fn a_bump_never_goes_back_to_a_generation_used() {
        // The counter was lost and made again lower than 7: raised to 8.
        let steps = vec![
            (incr(1), counter(Ok(Some(Some(3))))),
            (incr(5), counter(Ok(Some(Some(8))))),
        ];
        assert_eq!(run(&mut Bump::new(KEY, Some(7)), steps), Ok(8));
        // Lost again during the raise: created past it.
        let steps = vec![
            (incr(1), counter(Ok(Some(Some(7))))),
            (incr(1), counter(Ok(Some(None)))),
            (add(8), added(Ok(Some(true)))),
        ];
        assert_eq!(run(&mut Bump::new(KEY, Some(7)), steps), Ok(8));
    }

    #[test]
    fn a_bump_says_why_it_failed() {
        let bump = |steps| run(&mut Bump::new(KEY, Some(1)), steps);
        let skipped = vec![(incr(1), counter(Ok(None)))];
        assert_eq!(bump(skipped), Err(InvalidateError::Unavailable));
        let timeout = vec![(incr(1), counter(Err(Failure::Owed)))];
        assert_eq!(bump(timeout), Err(InvalidateError::NoAnswer));
        let not_a_number = vec![(incr(1), counter(Err(Failure::Refused)))];
        assert_eq!(bump(not_a_number), Err(InvalidateError::Refused));
        // Losing the race to create it, again and again: refused.
        let mut steps = Vec::new();
        for _ in 0..BUMP_TRIES {
            steps.push((incr(1), counter(Ok(Some(None)))));
            steps.push((add(2), added(Ok(Some(false)))));
        }
        assert_eq!(bump(steps), Err(InvalidateError::Refused));
    }
}
