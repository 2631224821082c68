//! Data-quality gates, checked on the submitter's thread before an event is queued (so before
//! features and model): per field, a rule (`required`, `range`, `integer`, `one_of`) and a
//! policy for a violation: `reject` (the submitter gets [`Error::Gate`], nothing is scored),
//! `flag` (scored; the answer carries the rule's bit, [`Score::gate_flags`]), or `impute`
//! (the value is replaced by a stated one, and the answer carries the bit too). Rules run in
//! order, each on the value the rules before it left; every violation is counted per rule.
//!
//! A missing value (NaN) violates only `required`; the other rules judge present values.
//!
//! [`Score::gate_flags`]: crate::Score::gate_flags
//!
//! # Examples
//!
//! ```
//! use streamscore::monitor::gates::GateSpec;
//!
//! let spec = GateSpec::from_toml(r#"
//! [[gate]]
//! field = "amount"
//! check = "range"
//! min = 0
//! max = 10000
//! policy = "reject"
//!
//! [[gate]]
//! field = "channel"
//! check = "one_of"
//! values = [0, 1, 2]
//! policy = "flag"
//! "#)?;
//! assert_eq!(spec.rules.len(), 2);
//! # Ok::<(), streamscore::Error>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The most rules one runtime checks (an answer's flags are one bit per rule).
pub const MAX_RULES: usize = 64;

/// What a rule requires of a field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Present (not NaN).
    Required,
    /// Within `[min, max]`.
    Range {
        /// Smallest allowed.
        min: f64,
        /// Largest allowed.
        max: f64,
    },
    /// A whole number.
    Integer,
    /// One of these (category codes).
    OneOf(Vec<f64>),
}

/// What a violation does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// Refuse the event with [`Error::Gate`].
    Reject,
    /// Score it; its answer carries the rule's bit.
    Flag,
    /// Replace the value with this one, score it; its answer carries the rule's bit.
    Impute(f32),
}

/// One rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Its name in errors, counters and flags (default `FIELD:CHECK`).
    pub name: String,
    /// The field (an event's value by the runtime's schema name).
    pub field: String,
    /// The requirement.
    pub check: Check,
    /// What a violation does.
    pub policy: Policy,
}

/// Every rule of a runtime, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GateSpec {
    /// The rules, checked in order.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    name: Option<String>,
    field: String,
    check: String,
    min: Option<f64>,
    max: Option<f64>,
    values: Option<Vec<f64>>,
    policy: String,
    value: Option<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecToml {
    #[serde(default)]
    gate: Vec<RuleToml>,
}

impl GateSpec {
    /// Parses `[[gate]]` tables: `field`, `check` (`required`, `range` with `min` and/or
    /// `max`, `integer`, `one_of` with `values`), `policy` (`reject`, `flag`, `impute` with
    /// `value`), and an optional `name`. Unknown keys and inconsistent rules are an
    /// [`Error::Config`].
    pub fn from_toml(text: &str) -> Result<Self> {
        let parsed: SpecToml =
            toml::from_str(text).map_err(|e| Error::Config(format!("gates: {e}")))?;
        let mut rules = Vec::with_capacity(parsed.gate.len());
        for (i, r) in parsed.gate.into_iter().enumerate() {
            let bad = |m: String| Error::Config(format!("gate {} (`{}`): {m}", i + 1, r.field));
            let check = match r.check.as_str() {
                "required" => Check::Required,
                "integer" => Check::Integer,
                "range" => {
                    let (min, max) =
                        (r.min.unwrap_or(f64::NEG_INFINITY), r.max.unwrap_or(f64::INFINITY));
                    if (r.min.is_none() && r.max.is_none())
                        || min.is_nan()
                        || max.is_nan()
                        || min > max
                    {
                        return Err(bad("a range needs min and/or max, min <= max".into()));
                    }
                    Check::Range { min, max }
                }
                "one_of" => match &r.values {
                    Some(v) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => {
                        Check::OneOf(v.clone())
                    }
                    _ => {
                        return Err(bad("one_of needs a non-empty list of finite `values`".into()));
                    }
                },
                other => {
                    return Err(bad(format!(
                        "unknown check `{other}` (required, range, integer, one_of)"
                    )));
                }
            };
            let policy = match (r.policy.as_str(), r.value) {
                ("reject", None) => Policy::Reject,
                ("flag", None) => Policy::Flag,
                ("impute", Some(v)) => Policy::Impute(v),
                ("impute", None) => return Err(bad("impute needs a `value`".into())),
                ("reject" | "flag", Some(_)) => {
                    return Err(bad("only impute takes a `value`".into()));
                }
                (other, _) => {
                    return Err(bad(format!("unknown policy `{other}` (reject, flag, impute)")));
                }
            };
            let name = r.name.clone().unwrap_or_else(|| format!("{}:{}", r.field, r.check));
            rules.push(Rule { name, field: r.field, check, policy });
        }
        Ok(GateSpec { rules })
    }

    /// Reads a gates file.
    pub fn from_path(path: &std::path::Path) -> Result<Self> {
        Self::from_toml(&crate::files::read_to_string(path, &crate::files::CONFIG)?)
    }
}

/// One rule's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct GateCount {
    /// The rule's name.
    pub rule: String,
    /// Its policy, as written (`reject`, `flag`, `impute`).
    pub policy: &'static str,
    /// Events that violated it.
    pub violations: u64,
}

struct Compiled {
    rule: Rule,
    index: usize,
    violations: AtomicU64,
}

/// The compiled rules of a runtime and their counters.
pub struct Gates {
    rules: Vec<Compiled>,
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates").field("rules", &self.rules.len()).finish()
    }
}

fn violates(check: &Check, v: f32) -> bool {
    match check {
        Check::Required => v.is_nan(),
        _ if v.is_nan() => false,
        Check::Range { min, max } => {
            let x = f64::from(v);
            x < *min || x > *max
        }
        Check::Integer => !v.is_finite() || v.fract() != 0.0,
        Check::OneOf(allowed) => !allowed.contains(&f64::from(v)),
    }
}

impl Gates {
    /// Compiles `spec` against the names of an accepted event's values; a field not among
    /// them, or more than [`MAX_RULES`] rules, is an [`Error::Config`].
    pub fn new(spec: &GateSpec, names: &[String]) -> Result<Self> {
        if spec.rules.len() > MAX_RULES {
            return Err(Error::Config(format!("{} gates; at most {MAX_RULES}", spec.rules.len())));
        }
        let rules = spec
            .rules
            .iter()
            .map(|r| {
                let index = names.iter().position(|n| *n == r.field).ok_or_else(|| {
                    Error::Config(format!(
                        "gate `{}`: no field `{}` among the event's {}",
                        r.name,
                        r.field,
                        names.len()
                    ))
                })?;
                Ok(Compiled { rule: r.clone(), index, violations: AtomicU64::new(0) })
            })
            .collect::<Result<_>>()?;
        Ok(Gates { rules })
    }

    /// The rules' names, by bit.
    pub fn names(&self) -> Vec<&str> {
        self.rules.iter().map(|c| c.rule.name.as_str()).collect()
    }

    /// Checks one event's values (`width` of them, validated), imputing in place; the
    /// answer's flags, or the first `reject` rule it violates.
    pub(crate) fn apply(&self, row: &mut [f32]) -> Result<u64> {
        let mut flags = 0u64;
        for (bit, c) in self.rules.iter().enumerate() {
            let v = row[c.index];
            if !violates(&c.rule.check, v) {
                continue;
            }
            c.violations.fetch_add(1, Ordering::Relaxed);
            match c.rule.policy {
                Policy::Reject => {
                    return Err(Error::Gate {
                        rule: c.rule.name.clone(),
                        field: c.rule.field.clone(),
                        value: v,
                    });
                }
                Policy::Flag => flags |= 1 << bit,
                Policy::Impute(x) => {
                    row[c.index] = x;
                    flags |= 1 << bit;
                }
            }
        }
        Ok(flags)
    }

    /// Every rule's counters.
    pub fn counts(&self) -> Vec<GateCount> {
        self.rules
            .iter()
            .map(|c| GateCount {
                rule: c.rule.name.clone(),
                policy: match c.rule.policy {
                    Policy::Reject => "reject",
                    Policy::Flag => "flag",
                    Policy::Impute(_) => "impute",
                },
                violations: c.violations.load(Ordering::Relaxed),
            })
            .collect()
    }
}
