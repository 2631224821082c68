//! The runtime under stress: 4 producers, 1.2M events, random deadlines, a queue small enough
//! to refuse. Every accepted event must be answered exactly once, with the reference scorer's
//! score for that very event's row (any mix-up between events shows as a wrong score).
//!
//! Release builds only (`cargo test --release --test stress`, part of the README's test
//! command): the debug build is too slow for a million scalar-scored events.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamscore::{Backend, Batch, Error, Event, Output, Reference, Runtime, RuntimeConfig};

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 300_000;
const POOL: usize = 8192;
const WINDOW: usize = 1024;

/// xorshift64*: deterministic per producer, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[derive(Default, Debug)]
struct Tally {
    accepted: u64,
    refused: u64,
    scored: u64,
    expired: u64,
    dropped_tickets: u64,
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: cargo test --release --test stress")]
fn a_million_events_each_answered_once_with_its_own_score() {
    let model = common::root().join("models/golden/lgb_binary/model.txt");
    let forest = streamscore::load_forest(&model).unwrap();
    let width = forest.n_features();
    // Distinct rows: the golden inputs (thresholds, NaN, zero band) and random ones.
    let golden = common::golden_cases().into_iter().find(|c| c.name == "lgb_binary").unwrap();
    let gbatch = golden.batch(&forest);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rows = Vec::with_capacity(POOL * width);
    for r in 0..POOL {
        for f in 0..width {
            rows.push(if r < gbatch.n_rows() {
                gbatch.value(r, f)
            } else {
                rng.unit() * 8.0 - 4.0
            });
        }
    }
    let reference = Reference::new(forest.clone());
    let mut expected = vec![0.0f32; POOL];
    reference
        .score_batch(&Batch::from_rows(&rows, width).unwrap(), Output::Transformed, &mut expected)
        .unwrap();
    let mut distinct: Vec<u32> = expected.iter().map(|v| v.to_bits()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > POOL * 9 / 10, "rows must score differently to expose mix-ups");

    let config =
        RuntimeConfig::default().with_queue_capacity(256).with_max_batch(64).with_workers(2);
    let rt = Arc::new(Runtime::builder().model(forest).config(config).build().unwrap());
    let rows = Arc::new(rows);
    let expected = Arc::new(expected);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (rt, rows, expected) = (rt.clone(), rows.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(p as u64 * 7919 + 1);
                let mut t = Tally::default();
                let mut window = VecDeque::with_capacity(WINDOW);
                let settle = |(idx, ticket): (usize, streamscore::Ticket), t: &mut Tally| {
                    match ticket.wait() {
                        Ok(s) => {
                            assert_eq!(
                                s.value().to_bits(),
                                expected[idx].to_bits(),
                                "row {idx}: answer of another event"
                            );
                            t.scored += 1;
                        }
                        Err(Error::Expired { .. }) => t.expired += 1,
                        Err(e) => panic!("unexpected answer: {e}"),
                    }
                };
                for _ in 0..PER_PRODUCER {
                    let idx = (rng.next() % POOL as u64) as usize;
                    let row = &rows[idx * width..(idx + 1) * width];
                    let mut event = Event::new(row);
                    // A quarter get deadlines from 0 to 2 ms: some expire in the queue.
                    if rng.next().is_multiple_of(4) {
                        event = event.with_deadline(
                            Instant::now() + Duration::from_micros(rng.next() % 2000),
                        );
                    }
                    let mut event = Some(event);
                    while let Some(e) = event.take() {
                        match rt.try_submit(e) {
                            Ok(ticket) => {
                                t.accepted += 1;
                                if rng.next().is_multiple_of(64) {
                                    // Dropped at once: must neither leak nor stall anything.
                                    t.dropped_tickets += 1;
                                    drop(ticket);
                                } else {
                                    window.push_back((idx, ticket));
                                }
                            }
                            Err(r) => {
                                assert!(matches!(r.error, Error::QueueFull), "{}", r.error);
                                t.refused += 1;
                                match window.pop_front() {
                                    Some(oldest) => settle(oldest, &mut t),
                                    None => std::thread::yield_now(),
                                }
                                event = Some(r.event);
                            }
                        }
                    }
                    if window.len() == WINDOW {
                        settle(window.pop_front().unwrap(), &mut t);
                    }
                }
                for pending in window {
                    settle(pending, &mut t);
                }
                t
            })
        })
        .collect();
    let tallies: Vec<Tally> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    rt.shutdown();
    let m = rt.metrics();
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    eprintln!("{tallies:?}\n{m:?}");
    assert_eq!(
        sum(|t| t.accepted),
        (PRODUCERS * PER_PRODUCER) as u64,
        "every event was eventually accepted"
    );
    assert_eq!(m.accepted, sum(|t| t.accepted));
    assert_eq!(m.rejected, sum(|t| t.refused));
    assert!(m.rejected > 0, "the queue was small enough to refuse");
    assert!(m.expired > 0, "some deadlines expired");
    assert_eq!(
        m.answered(),
        m.accepted,
        "lost = accepted - answered = {}",
        m.accepted - m.answered()
    );
    // Answers seen by the producers plus those of dropped tickets account for every event.
    assert_eq!(sum(|t| t.scored) + sum(|t| t.expired) + sum(|t| t.dropped_tickets), m.accepted);
    assert!(sum(|t| t.scored) <= m.scored && sum(|t| t.expired) <= m.expired);
}
