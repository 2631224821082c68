//! The feature spec file (TOML): the raw event schema and the features a model expects, in
//! its feature order. Parsed and validated once; [`Spec`] is the compiled, trusted form.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::{Error, Result};

/// What happens to an event older than its key's watermark by more than the allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatePolicy {
    /// The event is answered with [`Error::Late`] and leaves the state untouched.
    #[default]
    Reject,
    /// The event is counted in, as if it had happened at the oldest time still accepted
    /// (watermark minus allowance).
    Include,
}

/// What an unknown categorical value becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPolicy {
    /// A missing value (NaN code): one-hot columns are all 0, windowed features skip it.
    #[default]
    Missing,
    /// The event is an error.
    Error,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    events: Events,
    #[serde(default)]
    state: State,
    #[serde(rename = "feature")]
    features: Vec<FeatureDef>,
    #[serde(default, rename = "lookup")]
    lookups: Vec<super::lookup::LookupFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Events {
    key: String,
    time: String,
    #[serde(default = "default_unit")]
    time_unit: String,
    #[serde(default)]
    numeric: Vec<String>,
    #[serde(default)]
    categorical: Vec<CategoricalDef>,
}

fn default_unit() -> String {
    "ms".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoricalDef {
    name: String,
    #[serde(default)]
    values: Vec<String>,
    hash_buckets: Option<u32>,
    #[serde(default)]
    unknown: UnknownPolicy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    ttl: Option<String>,
    max_keys: Option<usize>,
    max_events_per_key: Option<usize>,
    allowed_lateness: Option<String>,
    #[serde(default)]
    late: LatePolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureDef {
    name: String,
    op: String,
    field: Option<String>,
    other: Option<String>,
    value: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    bounds: Option<Vec<f64>>,
    values: Option<Vec<String>>,
    window: Option<String>,
    #[serde(default)]
    tumbling: bool,
    half_life: Option<String>,
    default: Option<f64>,
    session: Option<String>,
    q: Option<f64>,
    max_age: Option<String>,
    stale: Option<StalePolicy>,
    table: Option<String>,
}

/// What a feature whose key history is older than its `max_age` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StalePolicy {
    /// The feature is missing (NaN); the event is scored.
    #[default]
    Missing,
    /// The event is answered with [`Error::Stale`] (its state still moves on).
    Error,
}

/// A feature's freshness limit: stale when the key's previous event is older than `max_age_ms`
/// at the event's time (a key's first event is never stale: it reads no history); for a
/// lookup feature, when the table row's timestamp is (a row without one is stale too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Output column.
    pub column: usize,
    /// The lookup table (index in [`Spec::lookups`]) whose row's timestamp is the age, or none
    /// for the key's history.
    pub lookup: Option<usize>,
    /// The limit.
    pub max_age_ms: i64,
    /// What a stale feature gives.
    pub policy: StalePolicy,
}

/// A raw categorical field: its vocabulary (code = index) or hash buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Categorical {
    /// Field name.
    pub name: String,
    /// Known values; a value's code is its index.
    pub values: Vec<String>,
    /// With no vocabulary: codes are `fnv1a(value) % buckets`.
    pub hash_buckets: Option<u32>,
    /// What an unknown value becomes.
    pub unknown: UnknownPolicy,
}

/// A quantile level in `[0, 1]` (never NaN, so equality is total).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level(f64);

impl Eq for Level {}

impl Level {
    /// `q` when it is in `[0, 1]`.
    pub fn new(q: f64) -> Option<Level> {
        (0.0..=1.0).contains(&q).then_some(Level(q))
    }

    /// The level.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Which events of a key a windowed op reads, besides the window's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Span {
    /// The events of the last `window_ms`: `(t - window_ms, t]`.
    Sliding,
    /// The events since the start of the current multiple of `window_ms`.
    Tumbling,
    /// The events of the current session: the longest run of the key's events ending at this
    /// one (at or before its time) in which no two consecutive events are more than `gap_ms`
    /// apart, cut at `window_ms` back (a session's events older than that are not read).
    Session {
        /// The inactivity gap that ends a session.
        gap_ms: i64,
    },
}

/// An aggregation over a key's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// Events in the window (the current one included).
    Count,
    /// Sum of the non-missing values.
    Sum,
    /// Mean of the non-missing values (NaN when there are none).
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Sample standard deviation (ddof 1; 0 below two values).
    Std,
    /// The key's previous value in the window (NaN when there is none).
    Last,
    /// Distinct non-missing values (exact).
    Distinct,
    /// The quantile of the non-missing values at this level, exact: NumPy's default
    /// (`method="linear"`) over the window's values, NaN when there are none.
    Quantile(Level),
}

/// Right operand of an arithmetic feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    /// Another raw field.
    Field(usize),
    /// A constant.
    Const(f32),
}

/// One output column's computation. Field indices point into the raw row; `slot` into the
/// windowed fields each key keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The raw value.
    Field(usize),
    /// `a + b`, `a - b`, `a * b`, `a / b` (`op` is one of `+ - * /`).
    Arith {
        /// The operator.
        op: char,
        /// Left field.
        a: usize,
        /// Right operand.
        b: Operand,
    },
    /// `ln(1 + x)`.
    Log1p(usize),
    /// `x` clamped to `[min, max]` (NaN stays missing).
    Clip(usize, f32, f32),
    /// `num / den`, or `default` when `den` is 0 or either is missing.
    Ratio {
        /// Numerator field.
        num: usize,
        /// Denominator field.
        den: usize,
        /// Value for a bad division.
        default: f32,
    },
    /// Index of the first bound above `x` (0..=bounds.len()); NaN stays missing.
    Bucketize(usize, Vec<f32>),
    /// 1 when the categorical code equals `code`, else 0 (missing codes give 0).
    OneHot(usize, f32),
    /// `x`, or `value` when missing.
    Fill(usize, f32),
    /// An aggregation over the key's window of `window_ms` (sliding, tumbling, or the
    /// current session cut at that length).
    Window {
        /// The aggregation.
        agg: Agg,
        /// The windowed field's slot (unused by `Count`).
        slot: usize,
        /// Window length.
        window_ms: i64,
        /// Which events of the window.
        span: Span,
    },
    /// Seconds from the current session's first event to this one (0 for a session's first).
    SessionAge {
        /// The inactivity gap that ends a session.
        gap_ms: i64,
        /// How far back a session is read.
        window_ms: i64,
    },
    /// Seconds from the first to the last event of the key's session before the current one
    /// (NaN when there is none within `window_ms`; a session cut by `window_ms` counts from
    /// its oldest event still read).
    SessionPrevious {
        /// The inactivity gap that ends a session.
        gap_ms: i64,
        /// How far back a session is read.
        window_ms: i64,
    },
    /// Sessions with an event in the last `window_ms`, the current one included.
    Sessions {
        /// The inactivity gap that ends a session.
        gap_ms: i64,
        /// Window length (sliding).
        window_ms: i64,
    },
    /// Exponentially weighted mean over event time with this half-life.
    Ewma {
        /// The field's slot.
        slot: usize,
        /// Half-life.
        half_life_ms: i64,
        /// Index of this feature's EWMA state in a key's state.
        state: usize,
    },
    /// `(x - mean) / std` of the key's previous values in the window (NaN when std is 0).
    ZScore {
        /// The field's slot.
        slot: usize,
        /// Window length (sliding).
        window_ms: i64,
    },
    /// `x / mean` of the key's previous values in the window (NaN when the mean is 0).
    RatioToMean {
        /// The field's slot.
        slot: usize,
        /// Window length (sliding).
        window_ms: i64,
    },
    /// Seconds since the key's previous event (NaN for a key's first).
    SinceLast,
    /// A field of a lookup table ([`Spec::lookups`]), by the row's lookup key.
    Lookup {
        /// Index of the table in [`Spec::lookups`].
        table: usize,
        /// Index of the field in the table's fields.
        field: usize,
    },
    /// Seconds from the lookup row's timestamp (its table's `time_field`) to the event's time
    /// (NaN when the table holds no row for the key, or the row no timestamp).
    LookupAge {
        /// Index of the table in [`Spec::lookups`].
        table: usize,
    },
}

impl Op {
    /// Whether the column depends on per-key state.
    pub fn is_stateful(&self) -> bool {
        matches!(
            self,
            Op::Window { .. }
                | Op::SessionAge { .. }
                | Op::SessionPrevious { .. }
                | Op::Sessions { .. }
                | Op::Ewma { .. }
                | Op::ZScore { .. }
                | Op::RatioToMean { .. }
                | Op::SinceLast
        )
    }
}

/// A compiled, validated spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Key field name (in files).
    pub key: String,
    /// Event-time field name (in files).
    pub time: String,
    /// Milliseconds per unit of the time field.
    pub time_scale: f64,
    /// Raw fields in row order: the numeric ones, then the categorical codes.
    pub fields: Vec<String>,
    /// Categorical fields (their codes follow the numeric fields in the row).
    pub categorical: Vec<Categorical>,
    /// Output column names, in the model's feature order.
    pub names: Vec<String>,
    /// Output column computations.
    pub ops: Vec<Op>,
    /// Raw field of each windowed slot.
    pub slots: Vec<usize>,
    /// Longest window a key must keep (sliding or tumbling), in ms.
    pub retention_ms: i64,
    /// A key whose event comes this long (event time) after its latest starts afresh; keys
    /// idle twice this long behind the stage's latest event time are freed.
    pub ttl_ms: Option<i64>,
    /// Live keys at most; the least recently seen are evicted first.
    pub max_keys: usize,
    /// Events a key keeps at most; older ones are dropped first.
    pub max_events_per_key: usize,
    /// How far behind its key's watermark an event may be and still count at its own time.
    pub allowed_lateness_ms: i64,
    /// What happens to later events.
    pub late: LatePolicy,
    /// EWMA states per key.
    pub n_ewma: usize,
    /// The features with a `max_age`.
    pub freshness: Vec<Freshness>,
    /// Lookup tables features read (`[[lookup]]`).
    pub lookups: Vec<super::lookup::Lookup>,
}

/// How far back a session op reads when its spec gives no `window`: one day.
pub const DEFAULT_SESSION_WINDOW_MS: i64 = 86_400_000;

fn bad(message: String) -> Error {
    Error::Config(format!("feature spec: {message}"))
}

/// Parses `"90s"`, `"15m"`, `"1h"`, `"7d"`, `"250ms"` into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 =
        number.parse().map_err(|_| bad(format!("`{s}` is not a duration like 90s or 1h")))?;
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3_600e3,
        "d" => 86_400e3,
        _ => {
            return Err(bad(format!("`{s}` is not a duration: the unit must be ms, s, m, h or d")));
        }
    };
    let ms = n * scale;
    if !(0.0..1e15).contains(&ms) {
        return Err(bad(format!("`{s}` is out of range")));
    }
    Ok(ms.round() as i64)
}

impl Spec {
    /// Parses and validates a spec from TOML text.
    pub fn from_toml(text: &str) -> Result<Spec> {
        Spec::parse(text, None)
    }

    /// Parses a spec whose relative paths (a lookup's CSV) are under `base`.
    fn parse(text: &str, base: Option<&std::path::Path>) -> Result<Spec> {
        let file: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let time_scale = match file.events.time_unit.as_str() {
            "ms" => 1.0,
            "s" => 1e3,
            other => return Err(bad(format!("time_unit `{other}` (ms or s)"))),
        };
        let mut fields = file.events.numeric.clone();
        let categorical: Vec<Categorical> = file
            .events
            .categorical
            .into_iter()
            .map(|c| {
                if c.values.is_empty() == c.hash_buckets.is_none() {
                    return Err(bad(format!(
                        "categorical `{}` needs either values or hash_buckets",
                        c.name
                    )));
                }
                if c.hash_buckets == Some(0) || c.hash_buckets.is_some_and(|b| b > 1 << 24) {
                    return Err(bad(format!("`{}`: hash_buckets must be 1..=2^24", c.name)));
                }
                Ok(Categorical {
                    name: c.name,
                    values: c.values,
                    hash_buckets: c.hash_buckets,
                    unknown: c.unknown,
                })
            })
            .collect::<Result<_>>()?;
        fields.extend(categorical.iter().map(|c| c.name.clone()));
        let index: HashMap<&str, usize> =
            fields.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect();
        if index.len() != fields.len() {
            return Err(bad("a field is declared twice".into()));
        }
        if [&file.events.key, &file.events.time].iter().any(|k| index.contains_key(k.as_str())) {
            return Err(bad(
                "the key and time fields are not features; do not list them as fields".into(),
            ));
        }
        let state = file.state;
        let mut spec = Spec {
            key: file.events.key,
            time: file.events.time,
            time_scale,
            fields: fields.clone(),
            categorical,
            names: Vec::new(),
            ops: Vec::new(),
            slots: Vec::new(),
            retention_ms: 0,
            ttl_ms: state.ttl.as_deref().map(parse_duration).transpose()?,
            max_keys: state.max_keys.unwrap_or(1_000_000).max(1),
            max_events_per_key: state.max_events_per_key.unwrap_or(4_096).max(1),
            allowed_lateness_ms: state
                .allowed_lateness
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .unwrap_or(0),
            late: state.late,
            n_ewma: 0,
            freshness: Vec::new(),
            lookups: Vec::new(),
        };
        for l in file.lookups {
            if spec.lookups.iter().any(|x| x.def.name == l.name()) {
                return Err(bad(format!("two lookups are named `{}`", l.name())));
            }
            let lookup = super::lookup::compile(l, &spec, &index, base)?;
            spec.lookups.push(lookup);
        }
        if file.features.is_empty() {
            return Err(bad("no [[feature]]".into()));
        }
        let mut slot_of = vec![usize::MAX; spec.fields.len()];
        for def in &file.features {
            spec.add(def, &index, &mut slot_of)?;
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = spec.names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(bad(format!("two features are named `{dup}`")));
        }
        Ok(spec)
    }

    /// Reads and parses a spec file.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Spec> {
        let path = path.as_ref();
        let text = crate::files::read_to_string(path, &crate::files::CONFIG)?;
        Spec::parse(&text, path.parent()).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// The windowed slot of raw field `field` (`slot_of[field]`, `usize::MAX` until it has
    /// one: a lookup, not a scan, so a spec of 100,000 fields parses in linear time).
    fn slot(&mut self, field: usize, slot_of: &mut [usize]) -> usize {
        if slot_of[field] == usize::MAX {
            self.slots.push(field);
            slot_of[field] = self.slots.len() - 1;
        }
        slot_of[field]
    }

    fn add(
        &mut self,
        d: &FeatureDef,
        index: &HashMap<&str, usize>,
        slot_of: &mut [usize],
    ) -> Result<()> {
        let name = &d.name;
        let field = |f: &Option<String>, what: &str| -> Result<usize> {
            let f = f
                .as_ref()
                .ok_or_else(|| bad(format!("feature `{name}` ({}) needs `{what}`", d.op)))?;
            index
                .get(f.as_str())
                .copied()
                .ok_or_else(|| bad(format!("feature `{name}`: unknown field `{f}`")))
        };
        let window = |d: &FeatureDef| -> Result<i64> {
            let w = d
                .window
                .as_deref()
                .ok_or_else(|| bad(format!("feature `{name}` needs `window`")))?;
            let ms = parse_duration(w)?;
            if ms == 0 {
                return Err(bad(format!("feature `{name}`: window must be positive")));
            }
            Ok(ms)
        };
        // A session op's gap, and how far back it reads (`window`, one day unless given).
        let session = |d: &FeatureDef| -> Result<(i64, i64)> {
            let gap = d
                .session
                .as_deref()
                .ok_or_else(|| bad(format!("feature `{name}` ({}) needs `session`", d.op)))?;
            if d.tumbling {
                return Err(bad(format!("feature `{name}`: a session is not tumbling")));
            }
            let gap_ms = parse_duration(gap)?;
            let window_ms = if d.window.is_some() { window(d)? } else { DEFAULT_SESSION_WINDOW_MS };
            if gap_ms == 0 || gap_ms > window_ms {
                return Err(bad(format!(
                    "feature `{name}`: the session gap must be positive and at most `window`"
                )));
            }
            Ok((gap_ms, window_ms))
        };
        if d.session.is_some()
            && !matches!(
                d.op.as_str(),
                "count"
                    | "sum"
                    | "mean"
                    | "min"
                    | "max"
                    | "std"
                    | "last"
                    | "distinct"
                    | "quantile"
                    | "median"
                    | "session_age"
                    | "session_previous"
                    | "sessions"
            )
        {
            return Err(bad(format!("feature `{name}`: op `{}` takes no `session`", d.op)));
        }
        let op = match d.op.as_str() {
            "field" => Op::Field(field(&d.field, "field")?),
            "add" | "sub" | "mul" | "div" => {
                let b = match (&d.other, d.value) {
                    (Some(_), None) => Operand::Field(field(&d.other, "other")?),
                    (None, Some(v)) => Operand::Const(v as f32),
                    _ => {
                        return Err(bad(format!(
                            "feature `{name}`: give exactly one of `other`, `value`"
                        )));
                    }
                };
                let op = ['+', '-', '*', '/']
                    [["add", "sub", "mul", "div"].iter().position(|o| *o == d.op).unwrap_or(0)];
                Op::Arith { op, a: field(&d.field, "field")?, b }
            }
            "log1p" => Op::Log1p(field(&d.field, "field")?),
            "clip" => {
                let (lo, hi) = (d.min.unwrap_or(f64::NEG_INFINITY), d.max.unwrap_or(f64::INFINITY));
                if lo.is_nan() || hi.is_nan() || lo > hi {
                    return Err(bad(format!("feature `{name}`: clip needs min <= max")));
                }
                Op::Clip(field(&d.field, "field")?, lo as f32, hi as f32)
            }
            "ratio" => Op::Ratio {
                num: field(&d.field, "field")?,
                den: field(&d.other, "other")?,
                default: d.default.unwrap_or(0.0) as f32,
            },
            "bucketize" => {
                let bounds: Vec<f32> =
                    d.bounds.clone().unwrap_or_default().iter().map(|&b| b as f32).collect();
                if bounds.is_empty()
                    || bounds.windows(2).any(|w| w[0] >= w[1] || w[0].is_nan() || w[1].is_nan())
                {
                    return Err(bad(format!("feature `{name}`: bounds must be increasing")));
                }
                Op::Bucketize(field(&d.field, "field")?, bounds)
            }
            "onehot" => {
                let f = field(&d.field, "field")?;
                let cat = self
                    .categorical
                    .iter()
                    .find(|c| Some(&c.name) == d.field.as_ref())
                    .ok_or_else(|| {
                        bad(format!("feature `{name}`: onehot needs a categorical field"))
                    })?;
                let values = d.values.clone().unwrap_or_else(|| cat.values.clone());
                if values.is_empty() {
                    return Err(bad(format!("feature `{name}`: onehot needs `values`")));
                }
                let mut columns = Vec::new();
                for v in &values {
                    let code = cat.code(v)?;
                    if code.is_nan() {
                        return Err(bad(format!(
                            "feature `{name}`: `{v}` is not a value of `{}`",
                            cat.name
                        )));
                    }
                    columns.push((format!("{name}_{v}"), Op::OneHot(f, code)));
                }
                for (n, op) in columns {
                    self.names.push(n);
                    self.ops.push(op);
                }
                return Ok(());
            }
            "fill" => Op::Fill(field(&d.field, "field")?, d.value.unwrap_or(0.0) as f32),
            "count" | "sum" | "mean" | "min" | "max" | "std" | "last" | "distinct" | "quantile"
            | "median" => {
                let agg = match d.op.as_str() {
                    "count" => Agg::Count,
                    "sum" => Agg::Sum,
                    "mean" => Agg::Mean,
                    "min" => Agg::Min,
                    "max" => Agg::Max,
                    "std" => Agg::Std,
                    "last" => Agg::Last,
                    "median" => Agg::Quantile(Level(0.5)),
                    "quantile" => {
                        let q = d.q.ok_or_else(|| {
                            bad(format!("feature `{name}` (quantile) needs `q` in [0, 1]"))
                        })?;
                        Agg::Quantile(Level::new(q).ok_or_else(|| {
                            bad(format!("feature `{name}`: q = {q} is not in [0, 1]"))
                        })?)
                    }
                    _ => Agg::Distinct,
                };
                if d.q.is_some() && d.op != "quantile" {
                    return Err(bad(format!("feature `{name}`: `q` is for op quantile")));
                }
                let slot = if agg == Agg::Count {
                    0
                } else {
                    self.slot(field(&d.field, "field")?, slot_of)
                };
                let (window_ms, span) = match (&d.session, d.tumbling) {
                    (Some(_), _) => {
                        let (gap_ms, window_ms) = session(d)?;
                        (window_ms, Span::Session { gap_ms })
                    }
                    (None, true) => (window(d)?, Span::Tumbling),
                    (None, false) => (window(d)?, Span::Sliding),
                };
                // A tumbling window starts at most its length before the event, as a sliding
                // one does, and a session is cut at that length: each needs `window_ms` of
                // history.
                self.retention_ms = self.retention_ms.max(window_ms);
                Op::Window { agg, slot, window_ms, span }
            }
            "session_age" | "session_previous" | "sessions" => {
                let (gap_ms, window_ms) = session(d)?;
                self.retention_ms = self.retention_ms.max(window_ms);
                match d.op.as_str() {
                    "session_age" => Op::SessionAge { gap_ms, window_ms },
                    "session_previous" => Op::SessionPrevious { gap_ms, window_ms },
                    _ => Op::Sessions { gap_ms, window_ms },
                }
            }
            "ewma" => {
                let half = d
                    .half_life
                    .as_deref()
                    .ok_or_else(|| bad(format!("feature `{name}` needs `half_life`")))?;
                let half_life_ms = parse_duration(half)?.max(1);
                let slot = self.slot(field(&d.field, "field")?, slot_of);
                self.n_ewma += 1;
                Op::Ewma { slot, half_life_ms, state: self.n_ewma - 1 }
            }
            "zscore" | "ratio_to_mean" => {
                let slot = self.slot(field(&d.field, "field")?, slot_of);
                let window_ms = window(d)?;
                self.retention_ms = self.retention_ms.max(window_ms);
                if d.op == "zscore" {
                    Op::ZScore { slot, window_ms }
                } else {
                    Op::RatioToMean { slot, window_ms }
                }
            }
            "since_last" => Op::SinceLast,
            "lookup" => {
                let table = self.table_of(d, name, "lookup")?;
                let t = &self.lookups[table].def.name;
                let f = d
                    .field
                    .as_deref()
                    .ok_or_else(|| bad(format!("feature `{name}` (lookup) needs `field`")))?;
                let field = self.lookups[table].def.fields.iter().position(|x| x == f).ok_or_else(
                    || bad(format!("feature `{name}`: lookup `{t}` has no field `{f}`")),
                )?;
                Op::Lookup { table, field }
            }
            "lookup_age" => Op::LookupAge { table: self.table_of(d, name, "lookup_age")? },
            other => return Err(bad(format!("feature `{name}`: unknown op `{other}`"))),
        };
        let lookup = match op {
            Op::Lookup { table, .. } | Op::LookupAge { table } => Some(table),
            _ => None,
        };
        if let Some(t) = lookup
            && (d.max_age.is_some() || matches!(op, Op::LookupAge { .. }))
            && self.lookups[t].def.time_field.is_none()
        {
            return Err(bad(format!(
                "feature `{name}`: lookup `{}` has no `time_field` to tell its rows' age",
                self.lookups[t].def.name
            )));
        }
        if let Some(age) = &d.max_age {
            if !op.is_stateful() && lookup.is_none() {
                return Err(bad(format!(
                    "feature `{name}`: max_age is for features that read the key's history or a lookup"
                )));
            }
            let max_age_ms = parse_duration(age)?;
            let policy = d.stale.unwrap_or_default();
            let column = self.ops.len();
            self.freshness.push(Freshness { column, lookup, max_age_ms, policy });
        } else if d.stale.is_some() {
            return Err(bad(format!("feature `{name}`: `stale` needs `max_age`")));
        }
        self.names.push(name.clone());
        self.ops.push(op);
        Ok(())
    }

    /// The lookup table a `lookup` or `lookup_age` feature names in `table`.
    fn table_of(&self, d: &FeatureDef, name: &str, op: &str) -> Result<usize> {
        let t = d
            .table
            .as_deref()
            .ok_or_else(|| bad(format!("feature `{name}` ({op}) needs `table`")))?;
        self.lookups
            .iter()
            .position(|l| l.def.name == t)
            .ok_or_else(|| bad(format!("feature `{name}`: no [[lookup]] named `{t}`")))
    }

    /// The code a categorical field's value travels as in an event row.
    pub fn encode(&self, field: &str, value: &str) -> Result<f32> {
        let cat = self
            .categorical
            .iter()
            .find(|c| c.name == field)
            .ok_or_else(|| bad(format!("`{field}` is not a categorical field")))?;
        cat.code(value)
    }

    /// The key an event's key value travels as: the number itself when it is an unsigned
    /// integer, else its 64-bit FNV-1a hash.
    pub fn key_of(value: &str) -> u64 {
        value.trim().parse().unwrap_or_else(|_| fnv1a(value.as_bytes()))
    }
}

impl Categorical {
    /// The code of `value`: its vocabulary index or hash bucket; an unknown value is NaN
    /// (missing) or an error, as the field's policy says.
    pub fn code(&self, value: &str) -> Result<f32> {
        if let Some(buckets) = self.hash_buckets {
            return Ok((fnv1a(value.as_bytes()) % u64::from(buckets)) as f32);
        }
        match self.values.iter().position(|v| v == value) {
            Some(i) => Ok(i as f32),
            None if value.is_empty() => Ok(f32::NAN),
            None => match self.unknown {
                UnknownPolicy::Missing => Ok(f32::NAN),
                UnknownPolicy::Error => Err(Error::Input {
                    at: self.name.clone(),
                    message: format!("unknown category `{value}`"),
                }),
            },
        }
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
