//! The audit log: every answer of a runtime (scores, and events answered with an error:
//! expired, shed, refused by the feature stage or a data-quality gate, failed in the backend;
//! with gates, each record's `gate_flags`) appended by a background
//! writer to Arrow IPC files that pyarrow, polars and duckdb read ([`AuditConfig`],
//! [`RuntimeBuilder::audit`](crate::RuntimeBuilder::audit)).
//!
//! Scoring threads hand each batch's records to the writer through a bounded queue and never
//! touch the disk: a full queue blocks them or drops the records and counts them
//! ([`AuditOverflow`]). The writer appends one record batch per flush (every
//! [`with_flush_every`](AuditConfig::with_flush_every)) to `audit-<start>-<n>.arrow.partial`
//! and, when the file passes its size or age, writes the footer and renames it
//! `audit-<start>-<n>.arrow`. A process killed with `kill -9` leaves its closed files whole and
//! its open file readable up to its last flushed batch: [`read`] (or pyarrow's
//! `ipc.open_stream` eight bytes in) stops at a torn tail and says so, never misreading it.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_array::builder::{
    FixedSizeListBuilder, Float32Builder, StringBuilder, TimestampMicrosecondBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::types::Int8Type;
use arrow_array::{ArrayRef, BooleanArray, DictionaryArray, Int8Array, RecordBatch, StringArray};
use arrow_ipc::MetadataVersion;
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use crossbeam_queue::ArrayQueue;

use crate::error::{Error, Result};
use crate::metrics::AuditSnapshot;

/// How often the writer takes what is queued (at most; `flush_every` when shorter).
const DRAIN_EVERY: Duration = Duration::from_millis(5);

/// What the scoring threads do when the writer's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditOverflow {
    /// Drop the batch's records and count them (`audit.dropped`): scoring never waits.
    #[default]
    Drop,
    /// Wait for room: no record is lost, and a slow disk slows scoring.
    Block,
}

/// When the writer asks the operating system to put a file on disk (`fsync`). Records
/// flushed to a file survive the process being killed either way; this is about the machine
/// losing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Never (the operating system writes back when it likes).
    Never,
    /// When a file is closed (rotation, shutdown).
    #[default]
    OnClose,
    /// After every flushed batch.
    EveryFlush,
}

/// Where and how the audit log is written.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    dir: PathBuf,
    rotate_bytes: u64,
    rotate_age: Duration,
    flush_every: Duration,
    queue: usize,
    overflow: AuditOverflow,
    fsync: Fsync,
    sample: f64,
}

impl AuditConfig {
    /// Files in `dir` (created if missing), rotated at 256 MiB or one hour, flushed every
    /// 100 ms, a queue of 8192 batches that drops when full, fsync on close, every answer.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AuditConfig {
            dir: dir.into(),
            rotate_bytes: 256 << 20,
            rotate_age: Duration::from_secs(3600),
            flush_every: Duration::from_millis(100),
            queue: 8192,
            overflow: AuditOverflow::Drop,
            fsync: Fsync::OnClose,
            sample: 1.0,
        }
    }

    /// Closes a file once it holds this many bytes (at least 64 KiB).
    pub fn with_rotate_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = bytes;
        self
    }

    /// Closes a file once it is this old.
    pub fn with_rotate_age(mut self, age: Duration) -> Self {
        self.rotate_age = age;
        self
    }

    /// How often the writer appends what it holds (1 ms to 60 s): the most a `kill -9` loses.
    pub fn with_flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every;
        self
    }

    /// Batches of records the writer's queue holds (1 to 1,048,576; default 8192).
    pub fn with_queue(mut self, batches: usize) -> Self {
        self.queue = batches;
        self
    }

    /// What a full queue does.
    pub fn with_overflow(mut self, overflow: AuditOverflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// When files are synced to disk.
    pub fn with_fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// The share of scored events recorded (0..=1, chosen per event from its sequence number);
    /// events answered with an error are always recorded.
    pub fn with_sample(mut self, share: f64) -> Self {
        self.sample = share;
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("audit: {m}")));
        if self.rotate_bytes < 64 << 10 {
            return bad(format!("rotate_bytes {} is under 64 KiB", self.rotate_bytes));
        }
        if self.rotate_age.is_zero() {
            return bad("rotate_age is 0".into());
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.flush_every) {
            return bad(format!("flush_every {:?} is not within 1 ms..=60 s", self.flush_every));
        }
        if !(1..=1 << 20).contains(&self.queue) {
            return bad(format!("queue {} is not within 1..=1048576", self.queue));
        }
        if !(0.0..=1.0).contains(&self.sample) {
            return bad(format!("sample {} is not within 0..=1", self.sample));
        }
        Ok(())
    }
}

/// How an event was answered, in the log's `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(crate) enum Status {
    Scored,
    Expired,
    Shed,
    Refused,
    Error,
}

impl Status {
    /// Every status, in the order of their codes.
    const ALL: [Status; 5] =
        [Status::Scored, Status::Expired, Status::Shed, Status::Refused, Status::Error];

    fn label(self) -> &'static str {
        match self {
            Status::Scored => "scored",
            Status::Expired => "expired",
            Status::Shed => "shed",
            Status::Refused => "refused",
            Status::Error => "error",
        }
    }

    /// The status of an answer with `error`.
    pub(crate) fn of(error: &Error) -> Self {
        match error {
            Error::Expired { .. } => Status::Expired,
            Error::Shed => Status::Shed,
            Error::Backend { .. } => Status::Error,
            _ => Status::Refused,
        }
    }
}

/// Records handed to the writer: one per event, column by column.
#[derive(Default)]
pub(crate) struct Records {
    n: usize,
    /// The shadow's answers rather than the primary's.
    pub shadow: bool,
    key: Vec<u64>,
    time_ms: Vec<i64>,
    arrival_us: Vec<i64>,
    latency_ns: Vec<u64>,
    version: Vec<u64>,
    variant: Vec<Option<Arc<str>>>,
    status: Vec<Status>,
    error: Vec<Option<String>>,
    /// Row-major, `width` per record; `inputs_ok` says which are present.
    inputs: Vec<f32>,
    inputs_ok: Vec<bool>,
    /// The raw fields (feature-stage runtimes only), as `inputs`.
    raw: Vec<f32>,
    raw_ok: Vec<bool>,
    outputs: Vec<f32>,
    outputs_ok: Vec<bool>,
    /// The gates each event violated under `flag` or `impute` (with gates only).
    gate_flags: Vec<u64>,
}

impl Records {
    fn reserve(&mut self, n: usize, width: usize, raw_width: usize, out_width: usize) {
        self.key.reserve(n);
        self.time_ms.reserve(n);
        self.arrival_us.reserve(n);
        self.latency_ns.reserve(n);
        self.version.reserve(n);
        self.variant.reserve(n);
        self.status.reserve(n);
        self.error.reserve(n);
        self.inputs.reserve(n * width);
        self.inputs_ok.reserve(n);
        self.raw.reserve(n * raw_width);
        self.raw_ok.reserve(n);
        self.outputs.reserve(n * out_width);
        self.outputs_ok.reserve(n);
        self.gate_flags.reserve(n);
    }

    fn clear(&mut self) {
        self.n = 0;
        self.shadow = false;
        self.key.clear();
        self.time_ms.clear();
        self.arrival_us.clear();
        self.latency_ns.clear();
        self.version.clear();
        self.variant.clear();
        self.status.clear();
        self.error.clear();
        self.inputs.clear();
        self.inputs_ok.clear();
        self.raw.clear();
        self.raw_ok.clear();
        self.outputs.clear();
        self.outputs_ok.clear();
        self.gate_flags.clear();
    }
}

/// Idle record buffers kept for reuse.
const SPARE_RECORDS: usize = 256;

/// A record's model inputs.
pub(crate) enum Inputs<'a> {
    /// Not known.
    None,
    /// One row.
    Row(&'a [f32]),
    /// Row `row` of a column-major batch of `n` rows.
    Column { values: &'a [f32], n: usize, row: usize },
}

/// One record's fields other than its values.
pub(crate) struct Meta<'a> {
    pub key: u64,
    pub time_ms: i64,
    pub accepted: Instant,
    pub answered: Instant,
    /// 0: none (not scored).
    pub version: u64,
    pub variant: Option<&'a Arc<str>>,
    pub status: Status,
    pub error: Option<&'a Error>,
    /// The gates violated under `flag` or `impute` (see `Score::gate_flags`).
    pub flags: u64,
}

impl<'a> Meta<'a> {
    /// A scored event's record: answered at `answered` by `version` (of `variant`).
    pub(crate) fn scored(
        (key, time_ms, accepted): (u64, i64, Instant),
        answered: Instant,
        version: u64,
        variant: Option<&'a Arc<str>>,
    ) -> Self {
        let status = Status::Scored;
        Meta { key, time_ms, accepted, answered, version, variant, status, error: None, flags: 0 }
    }

    /// The record of an event answered with `error`.
    pub(crate) fn failed(
        (key, time_ms, accepted): (u64, i64, Instant),
        answered: Instant,
        error: &'a Error,
    ) -> Self {
        let status = Status::of(error);
        Meta {
            key,
            time_ms,
            accepted,
            answered,
            version: 0,
            variant: None,
            status,
            error: Some(error),
            flags: 0,
        }
    }

    /// This record with the gates the event violated under `flag` or `impute`.
    pub(crate) fn with_flags(mut self, flags: u64) -> Self {
        self.flags = flags;
        self
    }
}

/// The log as the runtime's threads see it.
pub(crate) struct AuditLog {
    tx: Sender<Msg>,
    overflow: AuditOverflow,
    /// Scored events recorded when their sequence number's hash is below this.
    sample_cut: u64,
    sample_all: bool,
    /// Events offered, for sampling.
    seq: AtomicU64,
    pub width: usize,
    pub raw_width: usize,
    pub out_width: usize,
    /// Whether records carry gate flags (the runtime has data-quality gates).
    gated: bool,
    /// The wall clock at `Instant` `epoch`, to time-stamp arrivals.
    epoch: (Instant, i64),
    stats: Arc<Stats>,
    spare: Arc<ArrayQueue<Box<Records>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

enum Msg {
    Records(Box<Records>),
    Close,
}

/// The writer's counters.
#[derive(Default)]
struct Stats {
    written: AtomicU64,
    dropped: AtomicU64,
    files: AtomicU64,
    errors: AtomicU64,
}

impl AuditLog {
    /// Starts the writer for records of `width` model inputs (and `raw_width` raw fields, 0
    /// without a feature stage) and `out_width` outputs; `names` name the inputs, `gates` the
    /// data-quality rules whose flags each record carries (none: no `gate_flags` column).
    pub(crate) fn start(
        config: &AuditConfig,
        names: &[String],
        raw_names: &[String],
        out_width: usize,
        gates: &[String],
    ) -> Result<Self> {
        config.validate()?;
        std::fs::create_dir_all(&config.dir).map_err(|e| {
            Error::Config(format!("audit: cannot create {}: {e}", config.dir.display()))
        })?;
        let (width, raw_width) = (names.len(), raw_names.len());
        let schema = schema(names, raw_names, out_width, gates);
        let gated = !gates.is_empty();
        let (tx, rx) = crossbeam_channel::bounded(config.queue);
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        let stats = Arc::new(Stats::default());
        let spare = Arc::new(ArrayQueue::new(SPARE_RECORDS));
        let writer = Writer {
            config: config.clone(),
            schema,
            width,
            raw_width,
            out_width,
            gated,
            stamp: (now_us / 1000) as i64,
            next_file: 0,
            file: None,
            pending: Vec::new(),
            spare: spare.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("streamscore-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Config(format!("audit: cannot start the writer: {e}")))?;
        let sample_all = config.sample >= 1.0;
        Ok(AuditLog {
            tx,
            overflow: config.overflow,
            sample_cut: (config.sample * u64::MAX as f64) as u64,
            sample_all,
            seq: AtomicU64::new(0),
            width,
            raw_width,
            out_width,
            gated,
            epoch: (Instant::now(), now_us as i64),
            stats,
            spare,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Fresh records for about `n` events.
    pub(crate) fn records(&self, n: usize) -> Box<Records> {
        let mut r = self.spare.pop().unwrap_or_default();
        r.reserve(n, self.width, self.raw_width, self.out_width);
        r
    }

    /// Which of `n` scored events to record (all, or a sample by sequence number).
    pub(crate) fn sample(&self, n: usize, keep: &mut Vec<bool>) {
        keep.clear();
        if self.sample_all {
            keep.resize(n, true);
            return;
        }
        let first = self.seq.fetch_add(n as u64, Ordering::Relaxed);
        keep.extend((first..first + n as u64).map(|s| spread(s) < self.sample_cut));
    }

    /// Appends one record: `inputs` are the model's inputs (`width`) or `None`; `raw` the raw
    /// fields (`raw_width`) or `None`; `outputs` (`out_width`) or `None`.
    pub(crate) fn push(
        &self,
        r: &mut Records,
        meta: Meta<'_>,
        inputs: Inputs<'_>,
        raw: Option<&[f32]>,
        outputs: Option<&[f32]>,
    ) {
        r.n += 1;
        r.key.push(meta.key);
        r.time_ms.push(meta.time_ms);
        let since = meta.accepted.checked_duration_since(self.epoch.0);
        let arrival = match since {
            Some(d) => self.epoch.1 + d.as_micros() as i64,
            None => self.epoch.1 - self.epoch.0.duration_since(meta.accepted).as_micros() as i64,
        };
        r.arrival_us.push(arrival);
        r.latency_ns.push(meta.answered.saturating_duration_since(meta.accepted).as_nanos() as u64);
        r.version.push(meta.version);
        r.variant.push(meta.variant.cloned());
        r.status.push(meta.status);
        r.error.push(meta.error.map(ToString::to_string));
        match inputs {
            Inputs::Row(v) => fill(&mut r.inputs, &mut r.inputs_ok, Some(v), self.width),
            Inputs::Column { values, n, row } if values.len() == n * self.width => {
                r.inputs.extend((0..self.width).map(|f| values[f * n + row]));
                r.inputs_ok.push(true);
            }
            _ => fill(&mut r.inputs, &mut r.inputs_ok, None, self.width),
        }
        fill(&mut r.raw, &mut r.raw_ok, raw, self.raw_width);
        fill(&mut r.outputs, &mut r.outputs_ok, outputs, self.out_width);
        if self.gated {
            r.gate_flags.push(meta.flags);
        }
    }

    /// Hands records to the writer (blocking or dropping when its queue is full).
    pub(crate) fn send(&self, r: Box<Records>) {
        if r.n == 0 {
            let _ = self.spare.push(r);
            return;
        }
        let n = r.n as u64;
        let unsent = match self.overflow {
            AuditOverflow::Block => self.tx.send(Msg::Records(r)).err().map(|e| e.0),
            AuditOverflow::Drop => self.tx.try_send(Msg::Records(r)).err().map(|e| match e {
                TrySendError::Full(m) | TrySendError::Disconnected(m) => m,
            }),
        };
        if let Some(m) = unsent {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            // Dropped under overload: its buffers go back to the pool rather than the allocator.
            if let Msg::Records(mut r) = m {
                r.clear();
                let _ = self.spare.push(r);
            }
        }
    }

    /// The counters.
    pub(crate) fn snapshot(&self) -> AuditSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &*self.stats;
        AuditSnapshot {
            written: get(&s.written),
            dropped: get(&s.dropped),
            files: get(&s.files),
            errors: get(&s.errors),
        }
    }

    /// Writes what is queued, closes the open file and stops the writer. Idempotent.
    pub(crate) fn close(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = self.tx.send(Msg::Close);
            let _ = t.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// A sequence number spread over 0..2^64 (SplitMix64's finaliser), for sampling.
fn spread(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fill(values: &mut Vec<f32>, ok: &mut Vec<bool>, v: Option<&[f32]>, width: usize) {
    if width == 0 {
        return;
    }
    match v.filter(|v| v.len() == width) {
        Some(v) => {
            values.extend_from_slice(v);
            ok.push(true);
        }
        None => {
            values.resize(values.len() + width, f32::NAN);
            ok.push(false);
        }
    }
}

/// A small set of labels, dictionary-encoded.
fn dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
}

/// The log's Arrow schema: one row per answer.
fn schema(names: &[String], raw_names: &[String], out_width: usize, gates: &[String]) -> SchemaRef {
    let list = |n: usize| {
        DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), n as i32)
    };
    let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let us = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new("key", DataType::UInt64, false),
        Field::new("event_time", ms, true),
        Field::new("arrival", us, false),
        Field::new("latency_ns", DataType::UInt64, false),
        Field::new("model_version", DataType::UInt64, true),
        Field::new("variant", DataType::Utf8, true),
        Field::new("shadow", DataType::Boolean, false),
        Field::new("status", dictionary(), false),
        Field::new("error", DataType::Utf8, true),
        Field::new("inputs", list(names.len()), true),
    ];
    if !raw_names.is_empty() {
        fields.push(Field::new("raw", list(raw_names.len()), true));
    }
    fields.push(Field::new("outputs", list(out_width), true));
    if !gates.is_empty() {
        fields.push(Field::new("gate_flags", DataType::UInt64, false));
    }
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
    let mut metadata = vec![
        ("streamscore.inputs".to_string(), json(names)),
        ("streamscore.raw".to_string(), json(raw_names)),
    ];
    if !gates.is_empty() {
        metadata.push(("streamscore.gates".to_string(), json(gates)));
    }
    Arc::new(
        ArrowSchema::new(fields)
            .with_metadata(metadata.into_iter().collect::<std::collections::HashMap<_, _>>()),
    )
}

/// The background writer's state.
struct Writer {
    config: AuditConfig,
    schema: SchemaRef,
    width: usize,
    raw_width: usize,
    out_width: usize,
    gated: bool,
    /// Milliseconds since the epoch when the log started: in every file name.
    stamp: i64,
    next_file: u64,
    file: Option<Open>,
    // Boxed as they travel: the queue and the pool move a pointer, not the struct.
    #[allow(clippy::vec_box)]
    pending: Vec<Box<Records>>,
    /// Records written, cleared, for the scoring threads to fill again.
    spare: Arc<ArrayQueue<Box<Records>>>,
    stats: Arc<Stats>,
}

/// The file being written.
struct Open {
    writer: FileWriter<BufWriter<File>>,
    path: PathBuf,
    opened: Instant,
}

impl Writer {
    /// Drains the queue on a timer rather than waiting on it, so that a scoring thread's
    /// hand-off never has a sleeping writer to wake (a system call per batch); appends every
    /// `flush_every`.
    fn run(mut self, rx: Receiver<Msg>) {
        let every = self.config.flush_every;
        let nap = every.min(DRAIN_EVERY);
        let mut due = Instant::now() + every;
        'run: loop {
            std::thread::sleep(nap);
            loop {
                match rx.try_recv() {
                    Ok(Msg::Records(r)) => self.pending.push(r),
                    Ok(Msg::Close) | Err(TryRecvError::Disconnected) => break 'run,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if Instant::now() >= due {
                self.flush();
                due = Instant::now() + every;
            }
        }
        while let Ok(Msg::Records(r)) = rx.try_recv() {
            self.pending.push(r);
        }
        self.flush();
        self.close_file();
    }

    /// Appends the pending records as one record batch and flushes the file; rotates.
    fn flush(&mut self) {
        let rotate =
            self.file.as_ref().is_some_and(|f| f.opened.elapsed() >= self.config.rotate_age);
        if rotate {
            self.close_file();
        }
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let n: u64 = pending.iter().map(|r| r.n as u64).sum();
        let result = self.batch(&pending).and_then(|batch| self.append(&batch));
        for mut r in pending {
            r.clear();
            let _ = self.spare.push(r);
        }
        match result {
            Ok(bytes) => {
                self.stats.written.fetch_add(n, Ordering::Relaxed);
                if bytes >= self.config.rotate_bytes {
                    self.close_file();
                }
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                log::warn!("audit log: {n} records not written: {e}");
                // Start afresh: the open file ends at its last good batch.
                if let Some(open) = self.file.take() {
                    log::warn!("audit log: {} left open at its last flush", open.path.display());
                }
            }
        }
    }

    fn batch(&self, pending: &[Box<Records>]) -> Result<RecordBatch> {
        let n: usize = pending.iter().map(|r| r.n).sum();
        let mut key = UInt64Builder::with_capacity(n);
        let mut time = TimestampMillisecondBuilder::with_capacity(n);
        let mut arrival = TimestampMicrosecondBuilder::with_capacity(n);
        let mut latency = UInt64Builder::with_capacity(n);
        let mut version = UInt64Builder::with_capacity(n);
        let mut variant = StringBuilder::new();
        let mut status: Vec<i8> = Vec::with_capacity(n);
        let mut shadow: Vec<bool> = Vec::with_capacity(n);
        let mut error = StringBuilder::new();
        let mut gate_flags = UInt64Builder::with_capacity(if self.gated { n } else { 0 });
        let list = |w: usize| {
            let item = Arc::new(Field::new("item", DataType::Float32, true));
            FixedSizeListBuilder::with_capacity(Float32Builder::with_capacity(n * w), w as i32, n)
                .with_field(item)
        };
        let (mut inputs, mut raw, mut outputs) =
            (list(self.width), list(self.raw_width), list(self.out_width));
        for r in pending {
            key.append_slice(&r.key);
            for &t in &r.time_ms {
                time.append_option((t != 0).then_some(t));
            }
            arrival.append_slice(&r.arrival_us);
            latency.append_slice(&r.latency_ns);
            for &v in &r.version {
                // 0: not scored, no version.
                version.append_option((v != 0).then_some(v));
            }
            if r.variant.iter().all(Option::is_none) {
                variant.append_nulls(r.n);
            } else {
                r.variant.iter().for_each(|v| variant.append_option(v.as_deref()));
            }
            status.extend(r.status.iter().map(|&s| s as i8));
            shadow.extend(std::iter::repeat_n(r.shadow, r.n));
            if r.error.iter().all(Option::is_none) {
                error.append_nulls(r.n);
            } else {
                r.error.iter().for_each(|e| error.append_option(e.as_deref()));
            }
            append_list(&mut inputs, &r.inputs, &r.inputs_ok, self.width);
            append_list(&mut raw, &r.raw, &r.raw_ok, self.raw_width);
            append_list(&mut outputs, &r.outputs, &r.outputs_ok, self.out_width);
            if self.gated {
                gate_flags.append_slice(&r.gate_flags);
            }
        }
        let tz: Arc<str> = "UTC".into();
        let labels: ArrayRef = Arc::new(StringArray::from(Status::ALL.map(Status::label).to_vec()));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(key.finish()),
            Arc::new(time.finish().with_timezone(tz.clone())),
            Arc::new(arrival.finish().with_timezone(tz)),
            Arc::new(latency.finish()),
            Arc::new(version.finish()),
            Arc::new(variant.finish()),
            Arc::new(BooleanArray::from(shadow)),
            Arc::new(
                DictionaryArray::<Int8Type>::try_new(Int8Array::from(status), labels.clone())
                    .map_err(|e| Error::Config(format!("audit: {e}")))?,
            ),
            Arc::new(error.finish()),
            Arc::new(inputs.finish()),
        ];
        if self.raw_width > 0 {
            columns.push(Arc::new(raw.finish()));
        }
        columns.push(Arc::new(outputs.finish()));
        if self.gated {
            columns.push(Arc::new(gate_flags.finish()));
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::Config(format!("audit: cannot build a record batch: {e}")))
    }

    /// Writes a batch to the open file (opening one), flushes it; returns the file's length.
    fn append(&mut self, batch: &RecordBatch) -> Result<u64> {
        let io = |e: &dyn std::fmt::Display| Error::Config(format!("audit: {e}"));
        if self.file.is_none() {
            let name = format!("audit-{}-{:06}.arrow.partial", self.stamp, self.next_file);
            self.next_file += 1;
            let path = self.config.dir.join(name);
            let f = File::create(&path).map_err(|e| io(&format!("{}: {e}", path.display())))?;
            // 8-byte alignment, as pyarrow writes: the stream starts right after the 8-byte
            // header, where `read` and pyarrow's `open_stream` look for it in an open file.
            let options =
                IpcWriteOptions::try_new(8, false, MetadataVersion::V5).map_err(|e| io(&e))?;
            let out = BufWriter::with_capacity(1 << 20, f);
            let writer =
                FileWriter::try_new_with_options(out, &self.schema, options).map_err(|e| io(&e))?;
            self.file = Some(Open { writer, path, opened: Instant::now() });
        }
        let open = self.file.as_mut().expect("opened above");
        open.writer.write(batch).map_err(|e| io(&e))?;
        open.writer.flush().map_err(|e| io(&e))?;
        let file = open.writer.get_mut().get_mut();
        if self.config.fsync == Fsync::EveryFlush {
            file.sync_data().map_err(|e| io(&e))?;
        }
        file.stream_position().map_err(|e| io(&e))
    }

    /// Writes the open file's footer, syncs it (by policy) and renames it `.arrow`.
    fn close_file(&mut self) {
        let Some(mut open) = self.file.take() else { return };
        let result = (|| -> std::result::Result<PathBuf, String> {
            open.writer.finish().map_err(|e| e.to_string())?;
            open.writer.flush().map_err(|e| e.to_string())?;
            if self.config.fsync != Fsync::Never {
                open.writer.get_mut().get_mut().sync_all().map_err(|e| e.to_string())?;
            }
            let done = open.path.with_extension("");
            std::fs::rename(&open.path, &done).map_err(|e| e.to_string())?;
            Ok(done)
        })();
        match result {
            Ok(_) => {
                self.stats.files.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("audit log: cannot close {}: {e}", open.path.display());
            }
        }
    }
}

fn append_list(b: &mut FixedSizeListBuilder<Float32Builder>, v: &[f32], ok: &[bool], w: usize) {
    if w == 0 {
        return;
    }
    b.values().append_slice(v);
    for &o in ok {
        b.append(o);
    }
}

/// An audit file read back.
#[derive(Debug)]
pub struct AuditFile {
    /// Its record batches, in order.
    pub batches: Vec<RecordBatch>,
    /// True when the file is an open (`.partial`) one whose last batch was cut short (the
    /// process stopped mid-write): the batches before it are whole and returned, the torn
    /// bytes are skipped.
    pub torn: bool,
}

impl AuditFile {
    /// Records in all its batches.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Reads an audit file: a closed `.arrow` file through its footer, an open or abandoned
/// `.arrow.partial` one as the stream that follows its 8-byte header, up to its last whole
/// batch.
pub fn read(path: impl AsRef<Path>) -> Result<AuditFile> {
    let path = path.as_ref();
    let bad = |e: &dyn std::fmt::Display| Error::Input {
        at: path.display().to_string(),
        message: e.to_string(),
    };
    let mut f = File::open(path).map_err(|e| bad(&e))?;
    if path.extension().is_some_and(|e| e == "arrow") {
        let reader = FileReader::try_new(f, None).map_err(|e| bad(&e))?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
        return Ok(AuditFile { batches, torn: false });
    }
    let mut magic = [0u8; 8];
    if f.read_exact(&mut magic).is_err() || &magic[..6] != b"ARROW1" {
        // Killed before the header was out: nothing was flushed to it.
        return Ok(AuditFile { batches: Vec::new(), torn: true });
    }
    f.seek(SeekFrom::Start(8)).map_err(|e| bad(&e))?;
    let mut reader = match StreamReader::try_new(std::io::BufReader::new(f), None) {
        Ok(r) => r,
        // The schema message itself is torn.
        Err(_) => return Ok(AuditFile { batches: Vec::new(), torn: true }),
    };
    let mut batches = Vec::new();
    let mut torn = false;
    loop {
        match reader.next() {
            Some(Ok(b)) => batches.push(b),
            Some(Err(_)) => {
                torn = true;
                break;
            }
            None => break,
        }
    }
    Ok(AuditFile { batches, torn })
}

/// The audit files in `dir`, oldest first (closed and open).
pub fn files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Input { at: dir.display().to_string(), message: e.to_string() })?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("audit-")
                && (name.ends_with(".arrow") || name.ends_with(".arrow.partial"))
        })
        .collect();
    out.sort_by_key(|p| p.file_name().map(|n| n.to_string_lossy().replace(".partial", "")));
    Ok(out)
}

impl AuditFile {
    /// Feeds the file's scored, live (not shadow) records to a drift monitor, by model
    /// version, each at its event time where it has one (a runtime with a feature stage),
    /// else its arrival time: the report `Runtime::monitor_report` gave online, computed
    /// again offline. Returns the records fed. A file whose columns are not an
    /// audit log's, or whose inputs are not the reference's width, is an error.
    pub fn monitor(&self, monitor: &mut crate::monitor::profile::Monitor) -> Result<u64> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{
            Float32Type, TimestampMicrosecondType, TimestampMillisecondType, UInt64Type,
        };
        use arrow_array::{Array, FixedSizeListArray};
        let bad = |m: String| Error::Input { at: "audit file".into(), message: m };
        let width = monitor.reference().features.len();
        let mut fed = 0u64;
        let (mut values, mut scores): (Vec<f32>, Vec<f32>) = (Vec::new(), Vec::new());
        for batch in &self.batches {
            let column = |name: &str| {
                batch.column_by_name(name).ok_or_else(|| bad(format!("no `{name}` column")))
            };
            let list = |name: &str| -> Result<&FixedSizeListArray> {
                column(name)?
                    .as_fixed_size_list_opt()
                    .ok_or_else(|| bad(format!("`{name}` is not a list")))
            };
            let (inputs, outputs) = (list("inputs")?, list("outputs")?);
            if inputs.value_length() as usize != width {
                return Err(Error::WidthMismatch {
                    expected: width,
                    got: inputs.value_length() as usize,
                });
            }
            let ow = outputs.value_length() as usize;
            let input_values = inputs
                .values()
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| bad("inputs are not f32".into()))?;
            let output_values = outputs
                .values()
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| bad("outputs are not f32".into()))?;
            let versions = column("model_version")?
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| bad("model_version".into()))?;
            let arrival = column("arrival")?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| bad("arrival".into()))?;
            let shadow = column("shadow")?.as_boolean_opt().ok_or_else(|| bad("shadow".into()))?;
            let event_time = column("event_time")?
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| bad("event_time".into()))?;
            let at = |r: usize| {
                let ms = if event_time.is_valid(r) {
                    event_time.value(r)
                } else {
                    arrival.value(r) / 1000
                };
                ms.max(0) as u64
            };
            // Runs of rows with one version and one millisecond, observed together.
            let mut r = 0;
            while r < batch.num_rows() {
                let live = |r: usize| {
                    !shadow.value(r)
                        && outputs.is_valid(r)
                        && inputs.is_valid(r)
                        && versions.is_valid(r)
                        && ow >= 1
                };
                if !live(r) {
                    r += 1;
                    continue;
                }
                let (version, at_ms) = (versions.value(r), at(r));
                let start = r;
                while r < batch.num_rows()
                    && live(r)
                    && versions.value(r) == version
                    && at(r) == at_ms
                {
                    r += 1;
                }
                let n = r - start;
                values.clear();
                values.resize(n * width, 0.0);
                for (i, row) in (start..r).enumerate() {
                    let from = inputs.value_offset_at(row);
                    for f in 0..width {
                        values[f * n + i] = input_values.value(from + f);
                    }
                }
                scores.clear();
                scores.extend(
                    (start..r).map(|row| output_values.value(outputs.value_offset_at(row))),
                );
                monitor.observe(
                    version,
                    crate::batch::Columns::new(&values, n, width)?,
                    &scores,
                    at_ms,
                )?;
                fed += n as u64;
            }
        }
        Ok(fed)
    }
}
