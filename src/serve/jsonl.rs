//! The line-delimited JSON source and sink (the format and its guarantees: [`JsonlConfig`]).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::Notice;
use super::checkpoint::{self, CheckpointConfig};
use super::model::status_of;
use crate::error::{Error, Result};
use crate::event::{EventBatch, Schema};
use crate::ingest::reply::{Scores, Ticket};
use crate::runtime::{MAX_SET, Runtime};

/// A line-delimited JSON input and where its answers go (`[jsonl]`): `serve` reads events,
/// one JSON object per line, from a file or stdin, and writes one answer per input line, in
/// order, to a file or stdout.
///
/// An input line holds `input` (the model's inputs, or with a feature stage its raw fields, in
/// schema order; `null` is a missing value) or `fields` (values by field name; an absent field
/// is missing), and beside them `key` (u64) and `timestamp_ms` (i64; both required with a
/// feature stage, `key` also picks an A/B variant) and an optional `id` (a string or a number,
/// echoed):
///
/// ```text
/// {"id": "tx-1", "key": 42, "timestamp_ms": 1700000000000, "fields": {"amount": 12.5, "mcc": 3}}
/// {"id": 7, "input": [0.1, null, 3.0]}
/// ```
///
/// Line N of the output answers line N of the input (counted from 1, across restarts), for
/// every line, blank and malformed ones included:
///
/// ```text
/// {"line":1,"id":"tx-1","score":[0.031],"model_version":1}
/// {"line":2,"id":7,"error":"`input` holds 3 values; the model takes 4","status":400}
/// ```
///
/// Lines are parsed on the reader's thread and handed to the runtime in sets of up to `batch`
/// events (one queue place each), two sets in flight. When nothing more can be read at once
/// (a pipe whose writer is waiting for answers), everything in flight is answered and the
/// output flushed before the reader waits, so a sidecar's caller gets its answers at once.
/// Under the `block` and `reject` overload policies a full queue holds the reader back (the
/// input waits; nothing is refused); under `shed_oldest` a shed set's lines are answered with
/// the error.
///
/// **Positions.** While a source runs, checkpoints are stamped with the input lines answered
/// (taken only when every line up to there is answered, the output flushed and fsynced). On a
/// restart from a checkpoint at line P, a file input skips its first P lines and a file output
/// is cut back to its first P lines, so after a SIGKILL and a restart the output file is
/// exactly what an uninterrupted run writes. Stdin cannot be replayed: the state is restored
/// and the numbering goes on from P + 1. Events taken over HTTP meanwhile update the feature
/// state but are not counted in the position.
///
/// At the input's end `serve` drains and exits as on SIGTERM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// Events, one JSON object per line: a file, or `-` for stdin.
    pub input: PathBuf,
    /// Answers, one line per input line: a file (created, or cut back to a restored
    /// checkpoint's position), or `-` for stdout (the default).
    #[serde(default = "dash")]
    pub output: PathBuf,
    /// Events per set handed to the runtime (default: the runtime's `max_batch`).
    #[serde(default)]
    pub batch: Option<usize>,
    /// The longest input line taken, in bytes (default 1 MiB); a longer one is answered with
    /// an error (status 413) and skipped without being held in memory.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
}

fn dash() -> PathBuf {
    PathBuf::from("-")
}

fn default_max_line() -> usize {
    1 << 20
}

/// The longest line `max_line_bytes` may allow.
const MAX_LINE_LIMIT: usize = 64 << 20;

/// Sets in flight at once.
const DEPTH: usize = 2;

fn is_std(p: &Path) -> bool {
    p.as_os_str() == "-"
}

impl JsonlConfig {
    /// Reads `input` (`-`: stdin) and writes to `output` (`-`: stdout), other settings default.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        JsonlConfig {
            input: input.into(),
            output: output.into(),
            batch: None,
            max_line_bytes: default_max_line(),
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_LINE_LIMIT).contains(&self.max_line_bytes) {
            return Err(Error::Config(format!("jsonl.max_line_bytes: 1 to {MAX_LINE_LIMIT}")));
        }
        if self.batch.is_some_and(|b| !(1..=MAX_SET).contains(&b)) {
            return Err(Error::Config(format!("jsonl.batch: 1 to {MAX_SET}")));
        }
        if !is_std(&self.input) && self.input == self.output {
            return Err(Error::Config(format!(
                "jsonl: {} is both the input and the output",
                self.input.display()
            )));
        }
        Ok(())
    }

    /// True when answers go to stdout.
    pub fn writes_stdout(&self) -> bool {
        is_std(&self.output)
    }
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io { path: path.to_path_buf(), source: e }
}

/// What the reader and the rest of the server share.
pub(crate) struct Shared {
    rt: Arc<Runtime>,
    stop: AtomicBool,
    /// Held by the reader while it has lines taken and not yet answered; free while it waits
    /// for input (everything answered, the output flushed).
    busy: Mutex<()>,
    /// Input lines answered and flushed: the position a checkpoint is stamped with.
    answered: AtomicU64,
    /// Set by the checkpoint thread; the reader takes the checkpoint at its next settled point.
    due: AtomicBool,
    ckpt: Option<CheckpointConfig>,
    /// The output file, fsynced before a checkpoint (`None` for stdout).
    output: Option<(PathBuf, File)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a checkpoint at the lines answered; the caller holds `busy` or knows the reader
    /// has settled.
    fn checkpoint(&self) {
        let Some(c) = &self.ckpt else { return };
        if let Some((path, f)) = &self.output
            && let Err(e) = f.sync_data()
        {
            log::error!("{}: cannot sync before a checkpoint: {e}", path.display());
            eprintln!("streamscore serve: {}: cannot sync: {e}; no checkpoint", path.display());
            return;
        }
        checkpoint::checkpoint_or_log(&self.rt, c, Some(self.answered.load(Ordering::Acquire)));
    }

    /// The checkpoint thread's tick: a checkpoint now if the reader waits for input, else at
    /// its next settled point.
    pub(crate) fn tick(&self) {
        self.due.store(true, Ordering::Release);
        if let Ok(_idle) = self.busy.try_lock()
            && self.due.swap(false, Ordering::AcqRel)
        {
            self.checkpoint();
        }
    }
}

/// A running line-delimited JSON source.
pub(crate) struct Source {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Source {
    /// Opens the input and output (replaying from `restored`, a restored checkpoint's line
    /// position) and starts the reader's thread. It sends [`Notice::InputEnded`] when done.
    pub(crate) fn start(
        rt: Arc<Runtime>,
        c: &JsonlConfig,
        restored: Option<u64>,
        ckpt: Option<CheckpointConfig>,
        notices: mpsc::Sender<Notice>,
    ) -> Result<Source> {
        c.validate()?;
        let start = restored.unwrap_or(0);
        let (input, regular): (Box<dyn Read + Send>, bool) = if is_std(&c.input) {
            let fd = std::io::stdin().as_fd().try_clone_to_owned();
            let regular =
                fd.ok().and_then(|f| File::from(f).metadata().ok()).is_some_and(|m| m.is_file());
            (Box::new(std::io::stdin()), regular)
        } else {
            let f = File::open(&c.input).map_err(io_at(&c.input))?;
            let regular = f.metadata().map_err(io_at(&c.input))?.is_file();
            (Box::new(f), regular)
        };
        let mut lines = Lines::new(input, c.max_line_bytes);
        if start > 0 && regular {
            let mut skipped = 0;
            while skipped < start {
                if lines.next().is_some() {
                    skipped += 1;
                } else if lines.eof {
                    return Err(Error::Config(format!(
                        "{}: {skipped} lines, but the restored checkpoint covers {start}: \
                         a different input? (start with an empty checkpoint directory)",
                        c.input.display()
                    )));
                } else {
                    lines.fill().map_err(io_at(&c.input))?;
                }
            }
        }
        let (out, output): (Box<dyn Write + Send>, _) = if is_std(&c.output) {
            (Box::new(std::io::stdout()), None)
        } else {
            let f = open_output(&c.output, start)?;
            let sync = f.try_clone().map_err(io_at(&c.output))?;
            (Box::new(f), Some((c.output.clone(), sync)))
        };
        let shared = Arc::new(Shared {
            rt: rt.clone(),
            stop: AtomicBool::new(false),
            busy: Mutex::new(()),
            answered: AtomicU64::new(start),
            due: AtomicBool::new(false),
            ckpt,
            output,
        });
        let reader = Reader {
            shared: shared.clone(),
            schema: rt.schema().clone(),
            keyed: rt.feature_counters().is_some(),
            batch: c.batch.unwrap_or(rt.config().max_batch.get()).min(MAX_SET),
            max_line: c.max_line_bytes,
            lines,
            regular,
            out: std::io::BufWriter::with_capacity(1 << 16, out),
            out_path: c.output.clone(),
            in_path: c.input.clone(),
            read: start,
            written: start,
            chunk: Chunk::new(start),
            inflight: VecDeque::new(),
            spare: Vec::new(),
            text: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("streamscore-jsonl".into())
            .spawn(move || {
                let ended = reader.run();
                let _ = notices.send(Notice::InputEnded(ended));
            })
            .map_err(|e| Error::Config(format!("cannot start the input thread: {e}")))?;
        Ok(Source { shared, thread: Some(thread) })
    }

    /// What the checkpoint thread ticks.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Stops taking lines: returns once the reader has answered every line it took (and
    /// flushed them) and will submit nothing more. A reader waiting on stdin is left there.
    pub(crate) fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        drop(self.shared.lock());
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            let _ = self.thread.take().map(|t| t.join());
        }
    }

    /// The last checkpoint, after [`stop`](Source::stop) and the runtime's drain.
    pub(crate) fn final_checkpoint(&self) {
        self.shared.checkpoint();
    }
}

/// Opens the output: created (truncated) from the start, or cut back to its first `lines`
/// lines when replaying from a checkpoint at that position.
fn open_output(path: &Path, lines: u64) -> Result<File> {
    let io = io_at(path);
    if lines == 0 {
        return File::create(path).map_err(io);
    }
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(&io)?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut seen, mut offset) = (0u64, 0u64);
    'scan: loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        for i in memchr::memchr_iter(b'\n', &buf[..n]) {
            seen += 1;
            if seen == lines {
                offset += i as u64 + 1;
                break 'scan;
            }
        }
        offset += n as u64;
    }
    if seen < lines {
        return Err(Error::Config(format!(
            "{}: {seen} answers, but the restored checkpoint covers {lines} lines: a different \
             output? (start with an empty checkpoint directory)",
            path.display()
        )));
    }
    f.set_len(offset).map_err(&io)?;
    f.seek(std::io::SeekFrom::Start(offset)).map_err(&io)?;
    Ok(f)
}

/// One item from the input: a line (without its `\n`, or `\r\n`), or a line over the limit.
enum Item<'a> {
    Line(&'a [u8]),
    TooLong(usize),
}

/// Lines from a reader through a buffer of its own: only whole lines, never more than the
/// limit held (a longer line is skipped as it streams past).
struct Lines<R> {
    src: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    /// Bytes of an over-long line dropped so far.
    dropping: Option<usize>,
    eof: bool,
}

impl<R: Read> Lines<R> {
    fn new(src: R, max: usize) -> Self {
        let cap = (max + 2).max(1 << 16);
        Lines { src, buf: vec![0; cap], start: 0, end: 0, max, dropping: None, eof: false }
    }

    /// The next line already read (at the end, the last one without its `\n`).
    fn next(&mut self) -> Option<Item<'_>> {
        let data = &self.buf[self.start..self.end];
        let (len, skip) = match memchr::memchr(b'\n', data) {
            Some(i) => (i, i + 1),
            None if self.eof && (!data.is_empty() || self.dropping.is_some()) => {
                (data.len(), data.len())
            }
            None => return None,
        };
        let s = self.start;
        self.start += skip;
        if let Some(dropped) = self.dropping.take() {
            return Some(Item::TooLong(dropped + len));
        }
        let mut line = &self.buf[s..s + len];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.len() > self.max {
            return Some(Item::TooLong(line.len()));
        }
        Some(Item::Line(line))
    }

    /// Reads more (blocking while the source has nothing); sets `eof` at the end.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.eof {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // A whole buffer without a newline: a line over the limit, dropped as it streams.
            *self.dropping.get_or_insert(0) += self.end;
            self.end = 0;
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// One input line, as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    key: Option<u64>,
    #[serde(default)]
    timestamp_ms: Option<i64>,
    #[serde(default)]
    input: Option<Vec<Option<f64>>>,
    #[serde(default)]
    fields: Option<HashMap<String, Option<f64>>>,
}

/// A line's answer-to-be.
pub(crate) enum Out {
    /// The set's next event.
    Event { id: Option<String> },
    /// Refused before the runtime.
    Refused { id: Option<String>, status: u16, message: String },
}

/// Lines taken since the last set, and the events among them.
#[derive(Default)]
pub(crate) struct Chunk {
    /// The line number before this chunk's first.
    before: u64,
    pub outs: Vec<Out>,
    pub rows: Vec<f32>,
    pub keys: Vec<u64>,
    pub times: Vec<i64>,
}

impl Chunk {
    pub(crate) fn new(before: u64) -> Self {
        Chunk { before, ..Chunk::default() }
    }

    pub(crate) fn events(&self) -> usize {
        self.keys.len()
    }

    fn end(&self) -> u64 {
        self.before + self.outs.len() as u64
    }

    pub(crate) fn reset(&mut self, before: u64) {
        self.before = before;
        self.outs.clear();
        self.rows.clear();
        self.keys.clear();
        self.times.clear();
    }
}

struct Pending {
    ticket: Option<Result<Ticket<Scores>>>,
    chunk: Chunk,
}

/// The reader's thread.
struct Reader {
    shared: Arc<Shared>,
    schema: Schema,
    keyed: bool,
    batch: usize,
    max_line: usize,
    lines: Lines<Box<dyn Read + Send>>,
    regular: bool,
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    out_path: PathBuf,
    in_path: PathBuf,
    /// Lines taken so far (the last one's number).
    read: u64,
    /// Lines whose answers are written (flushed at the next `settle`).
    written: u64,
    chunk: Chunk,
    inflight: VecDeque<Pending>,
    spare: Vec<Chunk>,
    text: Vec<u8>,
}

impl Reader {
    fn run(mut self) -> Result<()> {
        let shared = self.shared.clone();
        let mut busy = Some(shared.lock());
        let ended = self.pump(&mut busy, &shared);
        // Whatever was taken is answered, even after an input error.
        let settled = self.submit().and_then(|()| self.settle());
        drop(busy);
        ended.and(settled)
    }

    fn pump<'a>(
        &mut self,
        busy: &mut Option<MutexGuard<'a, ()>>,
        shared: &'a Shared,
    ) -> Result<()> {
        loop {
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            while let Some(item) = self.lines.next() {
                let item = match item {
                    Item::Line(l) => Ok(l),
                    Item::TooLong(n) => Err(n),
                };
                let out = parse(&mut self.chunk, &self.schema, self.keyed, self.max_line, item);
                self.chunk.outs.push(out);
                self.read += 1;
                if self.chunk.outs.len() >= self.batch {
                    self.submit()?;
                    if shared.stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    if shared.due.swap(false, Ordering::AcqRel) {
                        self.settle()?;
                        shared.checkpoint();
                    }
                }
            }
            if self.lines.eof {
                return Ok(());
            }
            if self.regular {
                self.lines.fill().map_err(io_at(&self.in_path))?;
                continue;
            }
            // Waiting for input may take long: answer everything first.
            self.submit()?;
            self.settle()?;
            if shared.due.swap(false, Ordering::AcqRel) {
                shared.checkpoint();
            }
            *busy = None;
            let filled = self.lines.fill();
            *busy = Some(shared.lock());
            filled.map_err(io_at(&self.in_path))?;
        }
    }

    /// Hands the chunk's events to the runtime as one set (waiting for room when the queue is
    /// full) and starts a new chunk.
    fn submit(&mut self) -> Result<()> {
        if self.chunk.outs.is_empty() {
            return Ok(());
        }
        while self.inflight.len() >= DEPTH {
            self.complete_oldest()?;
        }
        let ticket = if self.chunk.events() == 0 {
            None
        } else {
            loop {
                let mut set = EventBatch::rows(&self.chunk.rows).with_keys(&self.chunk.keys);
                if self.keyed {
                    set = set.with_timestamps_ms(&self.chunk.times);
                }
                match self.shared.rt.try_submit_many(set) {
                    Err(Error::QueueFull) if !self.inflight.is_empty() => self.complete_oldest()?,
                    Err(Error::QueueFull) => std::thread::sleep(Duration::from_micros(100)),
                    Err(Error::Closed) => {
                        return Err(Error::Config(
                            "the runtime closed while the input was being read".into(),
                        ));
                    }
                    other => break Some(other),
                }
            }
        };
        let next = self.spare.pop().map_or_else(
            || Chunk::new(self.read),
            |mut c| {
                c.reset(self.read);
                c
            },
        );
        let chunk = std::mem::replace(&mut self.chunk, next);
        self.inflight.push_back(Pending { ticket, chunk });
        Ok(())
    }

    /// Answers every set in flight, flushes the output and moves the position.
    fn settle(&mut self) -> Result<()> {
        while !self.inflight.is_empty() {
            self.complete_oldest()?;
        }
        self.out.flush().map_err(io_at(&self.out_path))?;
        self.shared.answered.store(self.written, Ordering::Release);
        Ok(())
    }

    /// Waits for the oldest set's answers and writes its lines.
    fn complete_oldest(&mut self) -> Result<()> {
        let Some(Pending { ticket, chunk }) = self.inflight.pop_front() else { return Ok(()) };
        let answer = ticket.map(|t| t.and_then(Ticket::wait));
        let text = &mut self.text;
        text.clear();
        let mut event = 0;
        for (i, out) in chunk.outs.iter().enumerate() {
            let line = chunk.before + 1 + i as u64;
            render(text, At::Line(line), out, answer.as_ref(), &mut event);
        }
        self.out.write_all(text).map_err(io_at(&self.out_path))?;
        self.written = chunk.end();
        self.spare.push(chunk);
        Ok(())
    }
}

/// Writes the answer line for `out`: its refusal, or the set's answer for its `event`-th
/// event (`answer`: the set's scores, or why it has none; `None` when the chunk held no
/// event), moving `event` on past an event. Returns whether the line is an error.
pub(crate) fn render(
    text: &mut Vec<u8>,
    at: At<'_>,
    out: &Out,
    answer: Option<&Result<Scores>>,
    event: &mut usize,
) -> bool {
    match out {
        Out::Refused { id, status, message } => {
            refusal(text, at, id.as_deref(), *status, message);
            true
        }
        Out::Event { id } => {
            let (id, i) = (id.as_deref(), *event);
            *event += 1;
            match answer.map(|a| a.as_ref().map(|s| (s.get(i), s))) {
                Some(Ok((Some(Ok(values)), s))) => {
                    score(text, at, id, values, s.version_of(i));
                    false
                }
                Some(Ok((Some(Err(e)), _))) | Some(Err(e)) => {
                    refusal(text, at, id, status_of(e), &e.to_string());
                    true
                }
                Some(Ok((None, _))) | None => {
                    refusal(text, at, id, 500, "no answer for this event");
                    true
                }
            }
        }
    }
}

/// One line to an event of the chunk, or to its refusal.
pub(crate) fn parse(
    chunk: &mut Chunk,
    schema: &Schema,
    keyed: bool,
    max_line: usize,
    line: std::result::Result<&[u8], usize>,
) -> Out {
    let bytes = match line {
        Ok(b) => b,
        Err(n) => {
            return Out::Refused {
                id: None,
                status: 413,
                message: format!("a line of {n} bytes, over jsonl.max_line_bytes ({max_line})"),
            };
        }
    };
    let refuse = |id, message: String| Out::Refused { id, status: 400, message };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return refuse(None, "an empty line".into());
    }
    let line: Line = match serde_json::from_slice(bytes) {
        Ok(l) => l,
        Err(e) => return refuse(None, format!("not an event: {e}")),
    };
    let id = match &line.id {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.to_string()),
        Some(_) => return refuse(None, "`id` must be a string or a number".into()),
    };
    if keyed && (line.key.is_none() || line.timestamp_ms.is_none()) {
        return refuse(
            id,
            "the model runs a feature stage: give `key` and `timestamp_ms` beside the fields"
                .into(),
        );
    }
    let width = schema.len();
    let row = chunk.rows.len();
    match (line.input, line.fields) {
        (Some(values), None) => {
            if values.len() != width {
                return refuse(
                    id,
                    format!("`input` holds {} values; the model takes {width}", values.len()),
                );
            }
            chunk.rows.extend(values.iter().map(|v| v.map_or(f32::NAN, |x| x as f32)));
        }
        (None, Some(fields)) => {
            chunk.rows.resize(row + width, f32::NAN);
            for (name, v) in &fields {
                let Some(f) = schema.position(name) else {
                    chunk.rows.truncate(row);
                    return refuse(
                        id,
                        format!("no field `{name}` (fields: {})", schema.names().join(", ")),
                    );
                };
                chunk.rows[row + f] = v.map_or(f32::NAN, |x| x as f32);
            }
        }
        (Some(_), Some(_)) => return refuse(id, "give `input` or `fields`, not both".into()),
        (None, None) => return refuse(id, "no `input` and no `fields`".into()),
    }
    chunk.keys.push(line.key.unwrap_or(0));
    chunk.times.push(line.timestamp_ms.unwrap_or(0));
    Out::Event { id }
}

/// What an answer names as its input: a line of the input file, or a broker message
/// (`<partition>/<position>`).
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    Line(u64),
    Source(&'a str),
}

fn head(text: &mut Vec<u8>, at: At<'_>, id: Option<&str>) {
    match at {
        At::Line(line) => {
            text.extend_from_slice(b"{\"line\":");
            text.extend_from_slice(line.to_string().as_bytes());
        }
        At::Source(source) => {
            text.extend_from_slice(b"{\"source\":");
            serde_json::to_writer(&mut *text, source).expect("a string to memory");
        }
    }
    if let Some(id) = id {
        text.extend_from_slice(b",\"id\":");
        text.extend_from_slice(id.as_bytes());
    }
}

pub(crate) fn score(
    text: &mut Vec<u8>,
    at: At<'_>,
    id: Option<&str>,
    values: &[f32],
    version: u64,
) {
    head(text, at, id);
    text.extend_from_slice(b",\"score\":[");
    let mut f = ryu::Buffer::new();
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        if v.is_finite() {
            text.extend_from_slice(f.format_finite(v).as_bytes());
        } else {
            text.extend_from_slice(b"null");
        }
    }
    text.extend_from_slice(b"],\"model_version\":");
    text.extend_from_slice(version.to_string().as_bytes());
    text.extend_from_slice(b"}\n");
}

pub(crate) fn refusal(
    text: &mut Vec<u8>,
    at: At<'_>,
    id: Option<&str>,
    status: u16,
    message: &str,
) {
    head(text, at, id);
    text.extend_from_slice(b",\"error\":");
    serde_json::to_writer(&mut *text, message).expect("a string to memory");
    text.extend_from_slice(b",\"status\":");
    text.extend_from_slice(status.to_string().as_bytes());
    text.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(input: &[u8], max: usize) -> Vec<String> {
        let mut l = Lines::new(input, max);
        // A small buffer to cross its edges: the minimum is 64 KiB, so shrink it by hand.
        l.buf = vec![0; max + 2];
        let mut got = Vec::new();
        loop {
            let item = l.next().map(|i| match i {
                Item::Line(b) => String::from_utf8_lossy(b).into_owned(),
                Item::TooLong(n) => format!("<{n}>"),
            });
            match item {
                Some(s) => got.push(s),
                None if l.eof => return got,
                None => l.fill().unwrap(),
            }
        }
    }

    #[test]
    fn lines_split_skip_the_over_long_and_end_without_newline() {
        assert_eq!(items(b"a\nbb\r\n\nccc", 4), ["a", "bb", "", "ccc"]);
        assert_eq!(items(b"a\n0123456789\nb\n", 4), ["a", "<10>", "b"]);
        assert_eq!(items(b"0123456789", 4), ["<10>"]);
        assert_eq!(items(b"abcde\nabcd\n", 4), ["<5>", "abcd"]);
        assert_eq!(items(b"", 4), Vec::<String>::new());
        assert_eq!(items(b"x\n", 4), ["x"]);
    }

    #[test]
    fn output_is_cut_back_to_the_position() {
        let path = std::env::temp_dir().join(format!("streamscore-jsonl-{}", std::process::id()));
        std::fs::write(&path, b"one\ntwo\nthree\nfour").unwrap();
        let mut f = open_output(&path, 2).unwrap();
        f.write_all(b"x\n").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\nx\n");
        let e = open_output(&path, 9).unwrap_err().to_string();
        assert!(e.contains("3 answers"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn answers_are_json() {
        let mut t = Vec::new();
        score(&mut t, At::Line(3), Some("\"a\""), &[0.25, f32::NAN], 2);
        refusal(&mut t, At::Line(4), None, 400, "bad \"x\"");
        score(&mut t, At::Source("events/1-0"), None, &[0.5], 2);
        let v: Vec<Value> = t
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(
            v[0],
            serde_json::json!({"line": 3, "id": "a", "score": [0.25, null], "model_version": 2})
        );
        assert_eq!(v[1], serde_json::json!({"line": 4, "error": "bad \"x\"", "status": 400}));
        assert_eq!(
            v[2],
            serde_json::json!({"source": "events/1-0", "score": [0.5], "model_version": 2})
        );
    }
}
