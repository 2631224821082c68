//! The feature stage: semantics against a brute-force evaluation, batch-boundary invariance,
//! online (through the runtime, random batching) against offline, bounded memory under key
//! churn, and the outcome of every kind of bad input.

use std::sync::Arc;
use std::time::Duration;

use streamscore::backend::{Backend, Output};
use streamscore::features::{Features, LatePolicy, Spec, offline};
use streamscore::{Batch, Error, Event, EventBatch, Runtime, RuntimeConfig};

/// A spec with every windowed op, over two numeric fields and one categorical.
const SPEC: &str = r#"
[events]
key = "card"
time = "ts"
numeric = ["amount", "score"]
categorical = [{ name = "mcc", values = ["grocery", "travel", "fuel"] }]

[[feature]]
name = "amount"
op = "field"
field = "amount"

[[feature]]
name = "log_amount"
op = "log1p"
field = "amount"

[[feature]]
name = "per_score"
op = "ratio"
field = "amount"
other = "score"
default = -1.0

[[feature]]
name = "mcc"
op = "onehot"
field = "mcc"

[[feature]]
name = "n_1h"
op = "count"
window = "1h"

[[feature]]
name = "n_day"
op = "count"
window = "1d"
tumbling = true

[[feature]]
name = "sum_1h"
op = "sum"
field = "amount"
window = "1h"

[[feature]]
name = "mean_6h"
op = "mean"
field = "amount"
window = "6h"

[[feature]]
name = "min_6h"
op = "min"
field = "score"
window = "6h"

[[feature]]
name = "max_6h"
op = "max"
field = "score"
window = "6h"

[[feature]]
name = "std_6h"
op = "std"
field = "amount"
window = "6h"

[[feature]]
name = "last_1h"
op = "last"
field = "amount"
window = "1h"

[[feature]]
name = "distinct_mcc_1d"
op = "distinct"
field = "mcc"
window = "1d"

[[feature]]
name = "z_amount_1d"
op = "zscore"
field = "amount"
window = "1d"

[[feature]]
name = "amount_vs_mean_1d"
op = "ratio_to_mean"
field = "amount"
window = "1d"

[[feature]]
name = "ewma_amount"
op = "ewma"
field = "amount"
half_life = "2h"

[[feature]]
name = "since_last"
op = "since_last"

[[feature]]
name = "n_session"
op = "count"
session = "6h"

[[feature]]
name = "sum_session"
op = "sum"
field = "amount"
session = "6h"

[[feature]]
name = "max_session"
op = "max"
field = "score"
session = "6h"
window = "12h"

[[feature]]
name = "distinct_mcc_session"
op = "distinct"
field = "mcc"
session = "6h"

[[feature]]
name = "median_1d"
op = "median"
field = "amount"
window = "1d"

[[feature]]
name = "q90_3d"
op = "quantile"
q = 0.9
field = "score"
window = "3d"

[[feature]]
name = "q25_session"
op = "quantile"
q = 0.25
field = "amount"
session = "6h"

[[feature]]
name = "session_age"
op = "session_age"
session = "6h"

[[feature]]
name = "session_previous"
op = "session_previous"
session = "6h"

[[feature]]
name = "sessions_1d"
op = "sessions"
session = "2h"
window = "1d"
"#;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` events over `keys` keys, time mostly increasing (steps of 0-20 min); with `late`, one
/// in 50 goes back up to 3 h.
fn events(n: usize, keys: u64, late: bool, seed: u64) -> offline::Events {
    let mut rng = Rng(seed);
    let mut e = offline::Events::default();
    let mut t = 1_700_000_000_000i64;
    for i in 0..n {
        t += rng.below(20 * 60_000) as i64;
        let back = if late && rng.below(50) == 0 { rng.below(3 * 3_600_000) as i64 } else { 0 };
        let amount = if rng.below(30) == 0 { f32::NAN } else { (rng.below(10_000) as f32) / 100.0 };
        let score = if rng.below(7) == 0 { 0.0 } else { rng.below(100) as f32 / 10.0 };
        let mcc = if rng.below(20) == 0 { f32::NAN } else { rng.below(3) as f32 };
        e.rows.extend([amount, score, mcc]);
        e.keys.push(rng.below(keys));
        e.times.push(t - back);
        e.lines.push(i + 2);
    }
    e
}

fn spec(extra_state: &str) -> Spec {
    Spec::from_toml(&SPEC.replace(
        "[[feature]]\nname = \"amount\"",
        &format!("{extra_state}\n[[feature]]\nname = \"amount\""),
    ))
    .unwrap()
}

/// The features of every event, computed from scratch from all earlier events of its key
/// (no state, no eviction): the definitions the stage must meet when no limit applies.
fn brute_force(spec: &Spec, e: &offline::Events) -> Vec<f32> {
    let n_out = spec.names.len();
    let mut out = vec![f32::NAN; e.len() * n_out];
    let col = |name: &str| spec.names.iter().position(|n| n == name).unwrap();
    for i in 0..e.len() {
        let (k, t) = (e.keys[i], e.times[i]);
        let row = &e.rows[i * 3..i * 3 + 3];
        // Earlier events of the key (file order), the current one included.
        let hist: Vec<usize> = (0..=i).filter(|&j| e.keys[j] == k).collect();
        let in_window =
            |w: i64| hist.iter().copied().filter(move |&j| e.times[j] > t - w && e.times[j] <= t);
        let vals =
            |w: i64, f: usize| in_window(w).map(move |j| e.rows[j * 3 + f]).filter(|x| !x.is_nan());
        let o = &mut out[i * n_out..(i + 1) * n_out];
        o[col("amount")] = row[0];
        o[col("n_1h")] = in_window(3_600_000).count() as f32;
        let day = t.div_euclid(86_400_000) * 86_400_000;
        o[col("n_day")] =
            hist.iter().filter(|&&j| e.times[j] >= day && e.times[j] <= t).count() as f32;
        o[col("sum_1h")] = vals(3_600_000, 0).map(f64::from).fold(0.0, |a, b| a + b) as f32;
        let a6: Vec<f64> = vals(6 * 3_600_000, 0).map(f64::from).collect();
        o[col("mean_6h")] = if a6.is_empty() {
            f32::NAN
        } else {
            (a6.iter().sum::<f64>() / a6.len() as f64) as f32
        };
        o[col("min_6h")] = vals(6 * 3_600_000, 1).reduce(f32::min).unwrap_or(f32::NAN);
        o[col("max_6h")] = vals(6 * 3_600_000, 1).reduce(f32::max).unwrap_or(f32::NAN);
        // Sample std: 0 for a single value, NaN for none (the stage's stated convention).
        o[col("std_6h")] = match a6.len() {
            0 => f32::NAN,
            1 => 0.0,
            _ => sample_std(&a6).unwrap() as f32,
        };
        let prev: Vec<usize> = in_window(3_600_000).filter(|&j| j != i).collect();
        o[col("last_1h")] = prev.last().map_or(f32::NAN, |&j| e.rows[j * 3]);
        let mut d: Vec<u32> = vals(86_400_000, 2).map(f32::to_bits).collect();
        d.sort_unstable();
        d.dedup();
        o[col("distinct_mcc_1d")] = d.len() as f32;
        let hist_day: Vec<f64> = in_window(86_400_000)
            .filter(|&j| j != i)
            .map(|j| f64::from(e.rows[j * 3]))
            .filter(|x| !x.is_nan())
            .collect();
        let x = f64::from(row[0]);
        let mean = hist_day.iter().fold(0.0, |a, b| a + b) / hist_day.len() as f64;
        o[col("z_amount_1d")] = match sample_std(&hist_day) {
            Some(s) if s > 0.0 => ((x - mean) / s) as f32,
            _ => f32::NAN,
        };
        o[col("amount_vs_mean_1d")] =
            if !hist_day.is_empty() && mean != 0.0 { (x / mean) as f32 } else { f32::NAN };
        let before: Vec<i64> = hist.iter().filter(|&&j| j != i).map(|&j| e.times[j]).collect();
        o[col("since_last")] =
            before.iter().max().map_or(f32::NAN, |&p| ((t - p) as f64 / 1e3) as f32);
    }
    out
}

/// The columns [`brute_force_sessions`] computes.
const SESSION_COLUMNS: [&str; 10] = [
    "n_session",
    "sum_session",
    "max_session",
    "distinct_mcc_session",
    "median_1d",
    "q90_3d",
    "q25_session",
    "session_age",
    "session_previous",
    "sessions_1d",
];

/// The key's session ending at the current event, from scratch: `times` are the times of
/// the key's events at or before it, sorted, the current one last; the session is the longest
/// suffix with no step over `gap`, among the times after `t - cut`. Returns its first index.
fn session_from(times: &[i64], gap: i64, cut: i64) -> usize {
    let t = *times.last().unwrap();
    let mut first = times.len() - 1;
    while first > 0 && times[first - 1] > t - cut && times[first] - times[first - 1] <= gap {
        first -= 1;
    }
    first
}

/// The quantile by NumPy's documented default (`method="linear"`: `h = (n - 1) q`, between
/// the sorted values around `h`, with `numpy`'s two-sided lerp), from a full sort.
fn quantile_sorted(mut v: Vec<f32>, q: f64) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    v.sort_by(f32::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let (k, t) = (h.floor() as usize, h - h.floor());
    let a = f64::from(v[k]);
    let b = f64::from(v[(k + 1).min(v.len() - 1)]);
    let d = b - a;
    (if t >= 0.5 { b - d * (1.0 - t) } else { a + d * t }) as f32
}

/// The session and quantile columns of every event, from scratch: events are those of the
/// key that arrived earlier (not `refused`) at or before the event's time, in time order
/// (ties in arrival order). Late events included, so a late event that closes a gap merges
/// the sessions on both sides for every event after it.
fn brute_force_sessions(spec: &Spec, e: &offline::Events, refused: &[usize]) -> Vec<f32> {
    let n_out = spec.names.len();
    let mut is_refused = vec![false; e.len()];
    refused.iter().for_each(|&i| is_refused[i] = true);
    let mut out = vec![f32::NAN; e.len() * n_out];
    let col = |name: &str| spec.names.iter().position(|n| n == name).unwrap();
    let (h, d) = (3_600_000i64, 86_400_000i64);
    for i in 0..e.len() {
        if is_refused[i] {
            continue;
        }
        let (k, t) = (e.keys[i], e.times[i]);
        let mut hist: Vec<usize> =
            (0..i).filter(|&j| e.keys[j] == k && e.times[j] <= t && !is_refused[j]).collect();
        hist.push(i);
        hist.sort_by_key(|&j| (e.times[j], j != i, j));
        // The current event goes after the others of its time.
        let cur = hist.iter().position(|&j| j == i).unwrap();
        let item = hist.remove(cur);
        hist.push(item);
        let times: Vec<i64> = hist.iter().map(|&j| e.times[j]).collect();
        let field = |idx: &[usize], f: usize| -> Vec<f32> {
            idx.iter().map(|&j| e.rows[j * 3 + f]).filter(|x| !x.is_nan()).collect()
        };
        let o = &mut out[i * n_out..(i + 1) * n_out];
        let s6 = &hist[session_from(&times, 6 * h, d)..];
        o[col("n_session")] = s6.len() as f32;
        o[col("sum_session")] = field(s6, 0).iter().fold(0.0, |a, &x| a + f64::from(x)) as f32;
        let s12 = &hist[session_from(&times, 6 * h, 12 * h)..];
        o[col("max_session")] = field(s12, 1).into_iter().reduce(f32::max).unwrap_or(f32::NAN);
        let mut mcc: Vec<u32> = field(s6, 2).iter().map(|x| x.to_bits()).collect();
        mcc.sort_unstable();
        mcc.dedup();
        o[col("distinct_mcc_session")] = mcc.len() as f32;
        let within = |w: i64| -> Vec<usize> {
            hist.iter().copied().filter(|&j| e.times[j] > t - w).collect()
        };
        o[col("median_1d")] = quantile_sorted(field(&within(d), 0), 0.5);
        o[col("q90_3d")] = quantile_sorted(field(&within(3 * d), 1), 0.9);
        o[col("q25_session")] = quantile_sorted(field(s6, 0), 0.25);
        let first = session_from(&times, 6 * h, d);
        o[col("session_age")] = ((t - times[first]) as f64 / 1e3) as f32;
        o[col("session_previous")] = if first > 0 && times[first - 1] > t - d {
            let before = &times[..first];
            let p = session_from(before, 6 * h, t - before[before.len() - 1] + d);
            // The previous session is cut at the current event's `t - 1d`.
            let p = (p..first).find(|&j| times[j] > t - d).unwrap();
            ((times[first - 1] - times[p]) as f64 / 1e3) as f32
        } else {
            f32::NAN
        };
        let day: Vec<i64> = times.iter().copied().filter(|&x| x > t - d).collect();
        o[col("sessions_1d")] = (1 + day.windows(2).filter(|p| p[1] - p[0] > 2 * h).count()) as f32;
    }
    out
}

/// Sample std by the two-pass definition (mean = sum / n, then squared deviations), or
/// `None` below two values.
fn sample_std(v: &[f64]) -> Option<f64> {
    let n = v.len() as f64;
    let mean = v.iter().fold(0.0, |a, b| a + b) / n;
    let m2 = v.iter().fold(0.0, |a, x| a + (x - mean) * (x - mean));
    (v.len() >= 2).then(|| (m2 / (n - 1.0)).sqrt())
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn windowed_features_match_a_brute_force_evaluation() {
    let spec = spec("");
    let e = events(3_000, 40, false, 1);
    let (got, refused) = offline::run(&mut Features::new(spec.clone()), &e, 3_000).unwrap();
    assert!(refused.is_empty());
    let want = brute_force(&spec, &e);
    let sessions = brute_force_sessions(&spec, &e, &[]);
    let n_out = spec.names.len();
    let checked = [
        "amount",
        "n_1h",
        "n_day",
        "sum_1h",
        "mean_6h",
        "min_6h",
        "max_6h",
        "std_6h",
        "last_1h",
        "distinct_mcc_1d",
        "z_amount_1d",
        "amount_vs_mean_1d",
        "since_last",
        "n_session",
        "sum_session",
        "max_session",
        "distinct_mcc_session",
        "median_1d",
        "q90_3d",
        "q25_session",
        "session_age",
        "session_previous",
        "sessions_1d",
    ];
    for name in checked {
        let c = spec.names.iter().position(|n| n == name).unwrap();
        for i in 0..e.len() {
            let from = if SESSION_COLUMNS.contains(&name) { &sessions } else { &want };
            let (g, w) = (got[i * n_out + c], from[i * n_out + c]);
            assert!(same(g, w), "{name}, event {i}: stage {g} vs brute force {w}");
        }
    }
}

/// Sessions and quantiles with late events (up to 3 h back, 2 h allowed, the rest refused):
/// against the from-scratch evaluation, every column order-free arithmetic keeps exact (the
/// sums are formed in time order by the stage, in this evaluation too, since a session's
/// late event is summed at its time position).
#[test]
fn sessions_and_quantiles_match_a_brute_force_evaluation_with_late_events() {
    let spec = spec("[state]\nallowed_lateness = \"2h\"");
    let e = events(3_000, 25, true, 5);
    let (got, refused) = offline::run(&mut Features::new(spec.clone()), &e, 3_000).unwrap();
    let refused: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
    assert!(!refused.is_empty() && refused.len() < 40, "{} refused", refused.len());
    let want = brute_force_sessions(&spec, &e, &refused);
    let n_out = spec.names.len();
    let mut merged = 0;
    for name in SESSION_COLUMNS {
        let c = spec.names.iter().position(|n| n == name).unwrap();
        for i in (0..e.len()).filter(|i| !refused.contains(i)) {
            let (g, w) = (got[i * n_out + c], want[i * n_out + c]);
            assert!(same(g, w), "{name}, event {i}: stage {g} vs brute force {w}");
        }
    }
    // Late events did land inside sessions (the case the test is for).
    let c = spec.names.iter().position(|n| n == "n_session").unwrap();
    for i in 1..e.len() {
        if e.times[i] < e.times[..i].iter().copied().max().unwrap() && got[i * n_out + c] > 1.0 {
            merged += 1;
        }
    }
    assert!(merged > 5, "{merged} late events inside a session");
}

/// A late event that closes the gap between two sessions merges them for every later event;
/// the answers already given stand.
#[test]
fn a_late_event_merges_two_sessions() {
    let spec = Spec::from_toml(
        r#"
[events]
key = "k"
time = "ts"
numeric = ["x"]

[state]
allowed_lateness = "1h"

[[feature]]
name = "n"
op = "count"
session = "30m"

[[feature]]
name = "age"
op = "session_age"
session = "30m"

[[feature]]
name = "previous"
op = "session_previous"
session = "30m"

[[feature]]
name = "sessions"
op = "sessions"
session = "30m"
window = "1d"
"#,
    )
    .unwrap();
    let m = 60_000i64;
    let times = [0, 10 * m, 60 * m, 35 * m, 70 * m];
    let mut f = Features::new(spec);
    let out = f.transform_rows(&[1.0; 5], &[7; 5], &times).unwrap();
    let col = |c: usize| out.values[c * 5..(c + 1) * 5].to_vec();
    // Before the late event at 35 min: sessions {0, 10} and {60}; it joins the first (25 min
    // after 10), and the event at 70 min sees one session of five.
    assert_eq!(col(0), [1.0, 2.0, 1.0, 3.0, 5.0]);
    assert_eq!(col(1), [0.0, 600.0, 0.0, 2_100.0, 4_200.0]);
    let previous = col(2);
    assert!(previous[0].is_nan() && previous[1].is_nan() && previous[3].is_nan());
    assert_eq!((previous[2], previous[4].is_nan()), (600.0, true));
    assert_eq!(col(3), [1.0, 1.0, 2.0, 1.0, 1.0]);
}

#[test]
fn quantile_and_session_specs_are_checked() {
    let base =
        "[events]\nkey = \"k\"\ntime = \"t\"\nnumeric = [\"x\"]\n[[feature]]\nname = \"f\"\n";
    for (body, says) in [
        ("op = \"quantile\"\nfield = \"x\"\nwindow = \"1h\"", "needs `q`"),
        ("op = \"quantile\"\nq = 1.5\nfield = \"x\"\nwindow = \"1h\"", "not in [0, 1]"),
        ("op = \"quantile\"\nq = nan\nfield = \"x\"\nwindow = \"1h\"", "not in [0, 1]"),
        ("op = \"median\"\nq = 0.5\nfield = \"x\"\nwindow = \"1h\"", "is for op quantile"),
        ("op = \"session_age\"", "needs `session`"),
        ("op = \"sessions\"\nsession = \"0s\"", "gap must be positive"),
        ("op = \"count\"\nsession = \"2d\"", "at most `window`"),
        ("op = \"count\"\nsession = \"1h\"\ntumbling = true", "not tumbling"),
        (
            "op = \"ewma\"\nfield = \"x\"\nhalf_life = \"1h\"\nsession = \"1h\"",
            "takes no `session`",
        ),
    ] {
        let err = Spec::from_toml(&format!("{base}{body}")).unwrap_err().to_string();
        assert!(err.contains(says), "{body}: {err}");
    }
}

#[test]
fn batch_boundaries_do_not_change_any_feature() {
    for state in [
        "",
        "[state]\nttl = \"3h\"\nmax_keys = 25\nmax_events_per_key = 8\nallowed_lateness = \"1h\"\nlate = \"include\"",
    ] {
        let spec = spec(state);
        let e = events(4_000, 60, true, 2);
        let (whole, _) = offline::run(&mut Features::new(spec.clone()), &e, 1 << 20).unwrap();
        for chunk in [1, 7, 256, 999] {
            let (part, _) = offline::run(&mut Features::new(spec.clone()), &e, chunk).unwrap();
            assert!(
                whole.iter().zip(&part).all(|(a, b)| same(*a, *b)),
                "chunks of {chunk} with state `{state}`"
            );
        }
    }
}

/// A backend that answers each event with its feature row, so the runtime's answers are the
/// features themselves.
struct Echo(usize);

impl Backend for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn n_features(&self) -> usize {
        self.0
    }
    fn output_width(&self, _: Output) -> usize {
        self.0
    }
    fn score_batch(&self, batch: &Batch, _: Output, out: &mut [f32]) -> streamscore::Result<()> {
        out.copy_from_slice(&batch.to_rows());
        Ok(())
    }
}

/// Streams the events through the runtime from one producer (acceptance order is file order),
/// with random batch sizes and delays, and checks every answer against the offline run bit for
/// bit, across TTL expiry, key-cap eviction and late events under both policies.
#[test]
fn online_features_are_bit_identical_to_offline() {
    let mut rng = Rng(99);
    for (i, state) in [
        "[state]\nttl = \"2h\"\nmax_keys = 20\nallowed_lateness = \"30m\"\nlate = \"include\"",
        "[state]\nttl = \"5h\"\nmax_events_per_key = 4\nallowed_lateness = \"1h\"\nlate = \"reject\"",
    ]
    .iter()
    .enumerate()
    {
        let spec = spec(state);
        let e = events(3_000, 50, true, 10 + i as u64);
        let (want, refused) = offline::run(&mut Features::new(spec.clone()), &e, 500).unwrap();
        assert_eq!(refused.is_empty(), spec.late == LatePolicy::Include);
        let n_out = spec.names.len();
        for _ in 0..3 {
            let config = RuntimeConfig::default()
                .with_max_batch(1 + rng.below(300) as usize)
                .with_max_delay(Duration::from_micros(rng.below(2_000)))
                .with_queue_capacity(4_096);
            let rt = Runtime::builder().features(Features::new(spec.clone())).backend(Arc::new(Echo(n_out))).config(config.clone()).build().unwrap();
            let tickets: Vec<_> = (0..e.len())
                .map(|j| {
                    let event = Event::new(&e.rows[j * 3..j * 3 + 3]).with_key(e.keys[j]).with_timestamp_ms(e.times[j]);
                    rt.try_submit(event).map_err(|r| r.error).unwrap()
                })
                .collect();
            for (j, t) in tickets.into_iter().enumerate() {
                match t.wait() {
                    Ok(score) => {
                        let row = &want[j * n_out..(j + 1) * n_out];
                        assert!(
                            score.values().iter().zip(row).all(|(a, b)| same(*a, *b)),
                            "event {j}: online {:?} vs offline {row:?}",
                            score.values()
                        );
                    }
                    Err(Error::Late { .. }) => assert!(refused.iter().any(|(r, _)| *r == j), "event {j} refused online only"),
                    Err(other) => panic!("event {j}: {other}"),
                }
            }
            let counters = rt.feature_counters().unwrap();
            assert_eq!(counters.late_rejected as usize, refused.len());
            rt.shutdown();
            // The same events in sets of random sizes (batch submission): the same answers.
            let rt = Runtime::builder().features(Features::new(spec.clone())).backend(Arc::new(Echo(n_out))).config(config).build().unwrap();
            let mut sets = Vec::new();
            let mut j = 0;
            while j < e.len() {
                let k = (1 + rng.below(200) as usize).min(e.len() - j);
                let events = EventBatch::rows(&e.rows[j * 3..(j + k) * 3])
                    .with_keys(&e.keys[j..j + k])
                    .with_timestamps_ms(&e.times[j..j + k]);
                sets.push((j, rt.try_submit_many(events).unwrap()));
                j += k;
            }
            for (first, t) in sets {
                let scores = t.wait().unwrap();
                for (i, answer) in scores.iter().enumerate() {
                    let j = first + i;
                    match answer {
                        Ok(values) => {
                            let row = &want[j * n_out..(j + 1) * n_out];
                            assert!(values.iter().zip(row).all(|(a, b)| same(*a, *b)), "set event {j}");
                        }
                        Err(Error::Late { .. }) => assert!(refused.iter().any(|(r, _)| *r == j), "set event {j} refused online only"),
                        Err(other) => panic!("set event {j}: {other}"),
                    }
                }
            }
            rt.shutdown();
            let m = rt.metrics();
            assert_eq!((m.accepted, m.answered(), m.errors as usize), (e.len() as u64, e.len() as u64, refused.len()));
        }
    }
}

#[test]
fn key_churn_stays_within_the_key_cap_and_its_memory() {
    let spec = spec("[state]\nmax_keys = 10000\nmax_events_per_key = 16");
    let mut stage = Features::new(spec.clone());
    let mut peak = 0;
    for round in 0..20u64 {
        // 50,000 fresh keys per round: 1M keys pass through a cap of 10,000.
        let keys: Vec<u64> = (0..50_000).map(|k| round * 50_000 + k).collect();
        let times: Vec<i64> = (0..50_000).map(|k| (round * 50_000 + k) as i64 * 1_000).collect();
        let rows = vec![1.0f32; 3 * 50_000];
        stage.transform_rows(&rows, &keys, &times).unwrap();
        assert!(stage.live_keys() <= 10_000);
        peak = peak.max(stage.state_bytes());
    }
    let per_key = peak / 10_000;
    eprintln!("peak state {peak} bytes for 10,000 keys: {per_key} bytes per live key");
    assert!(stage.counters().evicted_keys >= 990_000);
    // One event per key here: the map slot, the key state and one entry's buffers.
    assert!(per_key < 1_024, "{per_key} bytes per key");
}

#[test]
#[cfg(feature = "csv")]
fn bad_input_has_a_stated_outcome() {
    let spec = Spec::from_toml(
        r#"
        [events]
        key = "card"
        time = "ts"
        numeric = ["amount"]
        categorical = [{ name = "mcc", values = ["a", "b"], unknown = "error" }]
        [[feature]]
        name = "n"
        op = "count"
        window = "1h"
        [[feature]]
        name = "mcc"
        op = "onehot"
        field = "mcc"
        "#,
    )
    .unwrap();
    let csv = "card,ts,amount,mcc\n1,1000,5,a\n1,2000,x,a\n,3000,5,a\n1,4000,5,zzz\n1,5000,,b\n";
    let e = offline::read_csv(&spec, csv.as_bytes(), "t.csv").unwrap();
    // Non-numeric value, missing key, unknown category under `error`: refused with the line.
    let lines: Vec<usize> = e.refused.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert!(e.refused[0].1.to_string().contains("is not a number"), "{}", e.refused[0].1);
    // An empty value is missing, not an error.
    assert_eq!(e.len(), 2);
    assert!(e.rows[2].is_nan());
    // A missing column is a clear error up front.
    let err = offline::read_csv(&spec, b"card,ts,amount\n1,1,1\n", "t.csv").unwrap_err();
    assert!(err.to_string().contains("no column `mcc`"), "{err}");
    // Unknown categories under `missing` become NaN codes: one-hot all zero.
    let lax = Spec::from_toml(SPEC).unwrap();
    assert!(lax.encode("mcc", "unheard-of").unwrap().is_nan());
    // Through the runtime, an event without key or time is refused at submission.
    let rt = Runtime::builder()
        .features(Features::new(spec.clone()))
        .backend(Arc::new(Echo(spec.names.len())))
        .config(RuntimeConfig::default())
        .build()
        .unwrap();
    let refused = rt.try_submit(Event::new(vec![1.0, 0.0]).with_key(1)).unwrap_err();
    assert!(matches!(refused.error, Error::Input { .. }), "{}", refused.error);
    let wrong = rt.try_submit(Event::new(vec![1.0]).with_key(1).with_timestamp_ms(1)).unwrap_err();
    assert!(matches!(wrong.error, Error::WidthMismatch { .. }));
    rt.shutdown();
    // Spec mistakes are clear errors.
    for (bad, says) in [
        ("op = \"percentile\"", "unknown op"),
        ("op = \"sum\"\nfield = \"nope\"\nwindow = \"1h\"", "unknown field"),
        ("op = \"sum\"\nfield = \"amount\"\nwindow = \"1 fortnight\"", "duration"),
        ("op = \"sum\"\nfield = \"amount\"", "needs `window`"),
    ] {
        let text = format!(
            "[events]\nkey = \"k\"\ntime = \"t\"\nnumeric = [\"amount\"]\n[[feature]]\nname = \"f\"\n{bad}\n"
        );
        let err = Spec::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(says), "`{bad}`: {err}");
    }
}

/// A late event under `reject` is answered with `Error::Late` and leaves the key's state as
/// it was; under `include` it counts at the oldest accepted time.
#[test]
fn late_events_follow_the_policy() {
    for (policy, include) in [("reject", false), ("include", true)] {
        let text = format!(
            "[events]\nkey = \"k\"\ntime = \"t\"\n[state]\nallowed_lateness = \"10m\"\nlate = \"{policy}\"\n\
             [[feature]]\nname = \"n\"\nop = \"count\"\nwindow = \"1h\"\n"
        );
        let mut stage = Features::new(Spec::from_toml(&text).unwrap());
        let out =
            stage.transform_rows(&[], &[7, 7, 7], &[3_600_000, 3_000_000, 1_000_000]).unwrap();
        // 10 min behind the watermark: allowed, counted at its own time. Its window
        // (t - 1h, t] holds only itself: the first event is after it.
        assert_eq!(out.values[1], 1.0);
        match include {
            false => {
                assert!(matches!(out.errors.as_slice(), [(2, Error::Late { key: 7, .. })]));
                assert!(out.values[2].is_nan());
                assert_eq!(stage.counters().late_rejected, 1);
            }
            true => {
                assert!(out.errors.is_empty());
                // Counted at 3,600,000 - 600,000 = 3,000,000: its window holds the second
                // event and itself.
                assert_eq!(out.values[2], 2.0);
                assert_eq!(stage.counters().late_included, 1);
            }
        }
    }
}

/// Event times at the edges of i64, or beyond the documented range (|t| <= 2^53 ms), are a
/// typed error for that event (in the stage, when reading a CSV, and at submission), never a
/// panic or a silently saturated value; times at the range's ends work.
#[test]
fn event_times_outside_the_range_are_refused() {
    use streamscore::features::MAX_EVENT_TIME_MS;
    let spec = spec("");
    let mut stage = Features::new(spec.clone());
    let times = [
        i64::MIN,
        -MAX_EVENT_TIME_MS,
        i64::MIN + 1,
        -MAX_EVENT_TIME_MS - 1,
        0,
        MAX_EVENT_TIME_MS + 1,
        i64::MAX,
        MAX_EVENT_TIME_MS,
    ];
    let rows: Vec<f32> = times.iter().flat_map(|_| [5.0, 1.0, 0.0]).collect();
    let out = stage.transform_rows(&rows, &vec![1; times.len()], &times).unwrap();
    let refused: Vec<usize> = out.errors.iter().map(|(r, _)| *r).collect();
    assert_eq!(refused, [0, 2, 3, 5, 6]);
    for (_, e) in &out.errors {
        assert!(matches!(e, Error::Input { .. }) && e.to_string().contains("event time"), "{e}");
    }
    // The three in range were counted in order: the 1h count sees each alone (2^53 ms apart).
    let n_1h = spec.names.iter().position(|n| n == "n_1h").unwrap();
    let n = times.len();
    for r in [1, 4, 7] {
        assert_eq!(out.values[n_1h * n + r], 1.0, "row {r}");
    }

    #[cfg(feature = "csv")]
    {
        let csv = "card,ts,amount,score,mcc\n1,NaN,1,1,fuel\n1,inf,1,1,fuel\n1,1e30,1,1,fuel\n1,-1e30,1,1,fuel\n1,5,1,1,fuel\n";
        let e = offline::read_csv(&spec, csv.as_bytes(), "t.csv").unwrap();
        let lines: Vec<usize> = e.refused.iter().map(|(l, _)| *l).collect();
        assert_eq!((lines, e.len()), (vec![2, 3, 4, 5], 1));
        assert!(e.refused.iter().all(|(_, err)| err.to_string().contains("time")));
    }

    let n_out = spec.names.len();
    let rt = Runtime::builder()
        .features(Features::new(spec))
        .backend(Arc::new(Echo(n_out)))
        .build()
        .unwrap();
    for t in [i64::MIN, MAX_EVENT_TIME_MS + 1] {
        let event = Event::new(vec![1.0, 1.0, 0.0]).with_key(1).with_timestamp_ms(t);
        let r = rt.try_submit(event).unwrap_err();
        assert!(r.error.to_string().contains("event time"), "{}", r.error);
    }
    let ok = Event::new(vec![1.0, 1.0, 0.0]).with_key(1).with_timestamp_ms(MAX_EVENT_TIME_MS);
    assert!(rt.score(ok).is_ok());
}

/// A CSV header naming a column the spec reads twice is an error (it used to resolve to the
/// first occurrence silently).
#[test]
#[cfg(feature = "csv")]
fn duplicate_event_columns_are_refused() {
    let spec = spec("");
    let csv = "card,ts,amount,score,mcc,amount\n1,1000,5,1,fuel,7\n";
    let e = offline::read_csv(&spec, csv.as_bytes(), "t.csv").unwrap_err();
    assert!(e.to_string().contains("`amount` twice"), "{e}");
    let fine = "card,ts,amount,score,mcc,other,other\n1,1000,5,1,fuel,7,8\n";
    assert_eq!(offline::read_csv(&spec, fine.as_bytes(), "t.csv").unwrap().len(), 1);
}

/// A spec of 100,000 windowed features over 100,000 fields: slots and statistics are found by
/// lookup, not by scanning what came before (10^10 comparisons, 6 s in a release build, before).
#[test]
fn a_spec_of_100k_features_builds_in_linear_time() {
    let n = 100_000;
    let fields: Vec<String> = (0..n).map(|i| format!("\"x{i}\"")).collect();
    let mut text =
        format!("[events]\nkey = \"k\"\ntime = \"t\"\nnumeric = [{}]\n", fields.join(","));
    for i in 0..n {
        text.push_str(&format!(
            "[[feature]]\nname = \"s{i}\"\nop = \"sum\"\nfield = \"x{i}\"\nwindow = \"1h\"\n"
        ));
    }
    let spec = Spec::from_toml(&text).unwrap();
    assert_eq!((spec.names.len(), spec.slots.len()), (n, n));
    let mut stage = Features::new(spec);
    let raw = Batch::from_rows(&vec![1.0; n], n).unwrap();
    let mut out = streamscore::features::Output::default();
    stage.transform(&raw, &[1], &[1], &mut out).unwrap();
    assert!(out.errors.is_empty() && out.values.iter().all(|&v| v == 1.0));
}

/// Windowed quantiles against NumPy (`tests/quantile/expected.json`, from
/// `tests/quantile/generate.py`): every event of four streams (uniform, heavy ties, Cauchy
/// tails, mostly missing) at nine levels, sliding 40 s, bit for bit.
#[test]
fn windowed_quantiles_equal_numpy() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/quantile/expected.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let levels: Vec<f64> =
        golden["levels"].as_array().unwrap().iter().map(|q| q.as_f64().unwrap()).collect();
    let window_s = golden["window_s"].as_i64().unwrap();
    let mut text = String::from("[events]\nkey = \"k\"\ntime = \"t\"\nnumeric = [\"x\"]\n");
    for (i, q) in levels.iter().enumerate() {
        let op = if *q == 0.5 {
            "op = \"median\"".to_string()
        } else {
            format!("op = \"quantile\"\nq = {q:?}")
        };
        text += &format!(
            "[[feature]]\nname = \"q{i}\"\n{op}\nfield = \"x\"\nwindow = \"{window_s}s\"\n"
        );
    }
    let spec = Spec::from_toml(&text).unwrap();
    let mut checked = 0;
    for stream in golden["streams"].as_array().unwrap() {
        let values: Vec<f32> = stream["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
            .collect();
        let n = values.len();
        // One event a second: the window of event i holds events i-39..=i.
        let times: Vec<i64> = (0..n as i64).map(|i| i * 1_000).collect();
        let out = Features::new(spec.clone()).transform_rows(&values, &vec![1; n], &times).unwrap();
        for (i, row) in stream["expected"].as_array().unwrap().iter().enumerate() {
            for (l, want) in row.as_array().unwrap().iter().enumerate() {
                let got = out.values[l * n + i];
                let want = want.as_f64().map_or(f32::NAN, |x| x as f32);
                assert!(
                    same(got, want),
                    "{}, event {i}, q {}: {got} vs numpy {want}",
                    stream["name"],
                    levels[l]
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 1_020 * 9);
}

/// Freshness: a feature with `max_age` is missing (policy `missing`) or refuses the event with
/// `Error::Stale` (policy `error`) when the key's previous event is older than the limit; a
/// key's first event is never stale, and a refused stale event still moves the key's state on.
#[test]
fn stale_features_follow_their_policy() {
    let spec = Spec::from_toml(
        r#"
[events]
key = "k"
time = "ts"
numeric = ["x"]

[[feature]]
name = "sum_1d"
op = "sum"
field = "x"
window = "1d"
max_age = "1h"

[[feature]]
name = "ewma"
op = "ewma"
field = "x"
half_life = "1h"
max_age = "2h"
stale = "error"

[[feature]]
name = "x"
op = "field"
field = "x"
"#,
    )
    .unwrap();
    let h = 3_600_000i64;
    // Key 1 at 0, 30 min (fresh), 2 h (sum stale), 5 h (both stale: refused), 5.5 h (fresh).
    let times = [0, h / 2, 2 * h, 5 * h, 5 * h + h / 2];
    let mut f = Features::new(spec.clone());
    let out = f.transform_rows(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1; 5], &times).unwrap();
    let col = |c: usize| out.values[c * 5..(c + 1) * 5].to_vec();
    let sum = col(0);
    assert_eq!((sum[0], sum[1], sum[4]), (1.0, 3.0, 15.0), "{sum:?}");
    assert!(sum[2].is_nan() && sum[3].is_nan(), "{sum:?}");
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    let (row, err) = &out.errors[0];
    assert_eq!(*row, 3);
    assert!(
        matches!(err, Error::Stale { key: 1, feature, age_ms, max_age_ms }
            if feature == "ewma" && *age_ms == 3 * h && *max_age_ms == 2 * h),
        "{err}"
    );
    assert!(col(2)[3].is_nan(), "a refused event's row is all missing");
    // Three stale findings: the sum at 2 h, the sum and the EWMA at 5 h.
    assert_eq!(f.counters().stale, 3);
    // Spec mistakes.
    let base =
        "[events]\nkey = \"k\"\ntime = \"t\"\nnumeric = [\"x\"]\n[[feature]]\nname = \"f\"\n";
    for (body, says) in [
        ("op = \"field\"\nfield = \"x\"\nmax_age = \"1h\"", "max_age is for features"),
        ("op = \"since_last\"\nstale = \"error\"", "`stale` needs `max_age`"),
        ("op = \"since_last\"\nmax_age = \"1h\"\nstale = \"drop\"", "unknown variant"),
    ] {
        let err = Spec::from_toml(&format!("{base}{body}")).unwrap_err().to_string();
        assert!(err.contains(says), "{body}: {err}");
    }
}
