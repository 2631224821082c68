//! The `streamscore` command line.
//!
//! `score`, `inspect`, `drift`, `profile`, `monitor` and `bench --json` are a stable contract: scripts and later tools rely on their flags and
//! output layout. Every error prints one `error:` line and exits with 1.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

mod args;
mod batches;
mod bench;
mod drift;
mod frames_bench;
mod gpu_bench;
mod lifecycle_bench;
#[cfg(feature = "audit")]
mod monitor;
mod profile;
#[cfg(feature = "serve")]
mod serve;
mod spec;

use clap::{Parser, Subcommand};
use streamscore::io::{Columns, RowStream, write_scores};
use streamscore::model::gbdt::{Node, Test};
use streamscore::model::onnx::{OnnxModel, TensorInfo};
use streamscore::{BackendSpec, Error, Forest, Model, Output, load_model};

#[derive(Debug, Parser)]
#[command(
    name = "streamscore",
    version,
    about = "Score events with tree ensembles and neural nets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score every row of an input file; one output line per row.
    Score {
        /// Model file: LightGBM text, XGBoost JSON or ONNX (scored by our dense path when the
        /// graph is a dense net, else by ONNX Runtime).
        #[arg(long)]
        model: PathBuf,
        /// Rows to score: CSV (header matched to feature names) or .npy (2-D f32/f64); `-` is stdin.
        #[arg(long)]
        input: String,
        /// Where to write scores; `-` (the default) is stdout.
        #[arg(long, default_value = "-")]
        output: String,
        /// Write raw margins instead of transformed predictions.
        #[arg(long)]
        raw: bool,
        /// The CSV has no header line: columns are the model's features in order.
        #[arg(long)]
        no_header: bool,
        /// auto (the fast CPU path), cpu, gpu, onnx or reference, or a comma-separated fallback
        /// list such as `gpu,cpu` (the first that can take the model wins).
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Threads the fast CPU tree scorer splits a chunk across; with `onnx`, ONNX Runtime's
        /// intra-op threads.
        #[arg(long, default_value_t = 1)]
        cpu_threads: usize,
        /// With `gpu`: allow a software adapter such as lavapipe (correct, not fast).
        #[arg(long)]
        gpu_software: bool,
        /// Rows read, scored and written at a time (memory stays bounded whatever the input).
        #[arg(long, default_value_t = 65_536)]
        chunk_rows: usize,
        /// Name the backend that scored the rows on stderr.
        #[arg(long)]
        verbose: bool,
    },
    /// Compute a feature spec's features over a CSV of raw events, in file order, through the
    /// same code the runtime runs online. Output: key, time, the features, error.
    Features {
        /// Feature spec (TOML).
        #[arg(long)]
        spec: PathBuf,
        /// Raw events: CSV with a header naming the key, time and every field; `-` is stdin.
        #[arg(long)]
        input: String,
        /// Where to write the features; `-` (the default) is stdout.
        #[arg(long, default_value = "-")]
        output: String,
        /// The output's format, `csv` or `parquet` (features and training sets; missing
        /// values are empty fields or nulls; a Parquet feature file leaves unreadable lines
        /// out); default: Parquet for a `.parquet` or `.pq` output, else CSV.
        #[arg(long)]
        format: Option<String>,
        /// A point-in-time training set instead: labels (CSV with the spec's key and time
        /// columns and a label), each given the features the stage computed for its key's
        /// latest event at or before its time. Output: key, time, label, the features,
        /// event_time (that event's time), error.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// The labels' label column.
        #[arg(long, default_value = "label", requires = "labels")]
        label_column: String,
        /// With --labels: a label whose key's latest event is older than this (90s, 15m, 7d)
        /// gets no features (error `stale`).
        #[arg(long, requires = "labels")]
        max_age: Option<String>,
        /// Backfill validation instead: compare the features with this file's (CSV with the
        /// spec's key and time columns and some of its features, computed elsewhere), rows
        /// matched by key and time; the report goes to --output, and differences beyond the
        /// tolerances exit with status 1.
        #[arg(long, conflicts_with = "labels")]
        compare: Option<PathBuf>,
        /// With --compare: absolute tolerance.
        #[arg(long, default_value_t = 0.0, requires = "compare")]
        atol: f64,
        /// With --compare: relative tolerance (of their value).
        #[arg(long, default_value_t = 1e-6, requires = "compare")]
        rtol: f64,
    },
    /// Run a drift detector (River 0.26's algorithms and parameter names) over one value per
    /// line; print the 0-based index of each drift, one per line.
    Drift(drift::DriftArgs),
    /// Profile a model's training rows (every feature and the score) into a reference for the
    /// runtime's drift monitor (JSON).
    Profile(profile::ProfileArgs),
    /// The drift monitor's report (windows, profiles, alerts; JSON) computed offline from an
    /// audit log against a training reference.
    #[cfg(feature = "audit")]
    Monitor(monitor::MonitorArgs),
    /// Measure throughput and latency: the backend alone (direct) and the full runtime (stream).
    Bench(Box<bench::BenchArgs>),
    /// Serve a model over the Open Inference Protocol (KServe v2) REST API until SIGTERM or
    /// SIGINT; prints `listening on http://ADDR` when ready.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Describe a model: format, objective, trees, classes, features, depth (for ONNX: input,
    /// outputs, and the dense layers or why the graph is not a dense net).
    Inspect {
        /// Model file: LightGBM text, XGBoost JSON or ONNX.
        #[arg(long)]
        model: PathBuf,
    },
}

fn features(
    spec: &std::path::Path,
    input: &str,
    output: &str,
    format: Option<&str>,
) -> Result<(), Error> {
    use streamscore::features::{Features, offline};
    use streamscore::io::table::{Table, Values};
    let format = streamscore::io::table::Format::choose(format, output)?;
    let (spec, events) = read_events(spec, input)?;
    let mut stage = Features::new(spec.clone());
    let (rows, refused) = offline::run(&mut stage, &events, 65_536)?;
    let mut errors: Vec<Option<String>> = vec![None; events.len()];
    for (i, e) in refused {
        errors[i] = Some(e.to_string());
    }
    let n_out = spec.names.len();
    // One output row per input row, in file order: the rows refused at reading (both lists
    // are in line order) come with empty key, time and features and their reason.
    let mut order: Vec<Result<usize, &Error>> = Vec::with_capacity(events.len());
    let mut unread = events.refused.iter().peekable();
    for i in 0..events.len() {
        while let Some((_, e)) = unread.next_if(|(line, _)| *line < events.lines[i]) {
            order.push(Err(e));
        }
        order.push(Ok(i));
    }
    order.extend(unread.map(|(_, e)| Err(e)));
    if format == streamscore::io::table::Format::Parquet {
        // Parquet has a row per event: an unreadable line has no key or time, and a null key
        // would turn the whole column into floats in pandas (keys past 2^53 then corrupt).
        order.retain(Result::is_ok);
        if !events.refused.is_empty() {
            eprintln!(
                "{} unreadable lines are not in the Parquet file (their reasons below)",
                events.refused.len()
            );
        }
    }
    let keys = order.iter().map(|r| r.ok().map(|i| events.keys[i])).collect();
    let times = order.iter().map(|r| r.ok().map(|i| events.times[i])).collect();
    let columns = (0..n_out).map(|c| {
        order.iter().map(|r| r.map_or(f32::NAN, |i| rows[i * n_out + c])).collect::<Vec<f32>>()
    });
    let reasons = order
        .iter()
        .map(|r| match r {
            Ok(i) => errors[*i].take(),
            Err(e) => Some(e.to_string()),
        })
        .collect();
    let mut table = Table::new();
    table.push(spec.key.clone(), Values::UInt64(keys))?;
    table.push(spec.time.clone(), Values::Int64(times))?;
    for (name, col) in spec.names.iter().zip(columns) {
        table.push(name.clone(), Values::Float32(col))?;
    }
    table.push("error", Values::Text(reasons))?;
    write_table(&table, format, output)?;
    let c = stage.counters();
    eprintln!(
        "{} events: {} computed, {} refused at reading, {} late rejected, {} late included; {} keys live, {} expired, {} evicted",
        events.len() + events.refused.len(),
        c.events,
        events.refused.len(),
        c.late_rejected,
        c.late_included,
        stage.live_keys(),
        c.expired_keys,
        c.evicted_keys
    );
    for (line, e) in events.refused.iter().take(10) {
        eprintln!("line {line}: {e}");
    }
    Ok(())
}

/// A feature spec and the raw events of `input` (`-`: standard input), read for the
/// `features` command's three modes.
fn read_events(
    spec: &std::path::Path,
    input: &str,
) -> Result<(streamscore::features::Spec, streamscore::features::offline::Events), Error> {
    use streamscore::features::{Spec, offline};
    let spec = Spec::from_path(spec)?;
    let bytes = if input == "-" {
        streamscore::io::read_stream("-", std::io::stdin().lock())?
    } else {
        streamscore::io::read_input(std::path::Path::new(input))?
    };
    let events = offline::read_csv(&spec, &bytes, input)?;
    Ok((spec, events))
}

/// Writes `table` to `output` (`-`: standard output) in `format`.
fn write_table(
    table: &streamscore::io::table::Table,
    format: streamscore::io::table::Format,
    output: &str,
) -> Result<(), Error> {
    if output == "-" {
        // Parquet needs a `Send` writer and is written whole; stdout's lock is neither.
        let mut bytes = Vec::new();
        table.write(format, &mut bytes, output)?;
        std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)
            .map_err(|e| Error::io(output, e))
    } else {
        let file = std::fs::File::create(output).map_err(|e| Error::io(output, e))?;
        table.write(format, file, output)
    }
}

/// Where a command writes: `-` is standard output, anything else a file created there.
fn open_output(output: &str) -> Result<Box<dyn std::io::Write>, Error> {
    Ok(if output == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(output).map_err(|e| Error::io(output, e))?)
    })
}

/// `streamscore features --compare`: backfill validation.
fn backfill(
    spec: &std::path::Path,
    input: &str,
    output: &str,
    theirs: &std::path::Path,
    atol: f64,
    rtol: f64,
) -> Result<(), Error> {
    use std::io::Write;
    use streamscore::features::backfill::{self, Tolerance};
    use streamscore::features::{Features, offline};
    if !(atol >= 0.0 && rtol >= 0.0 && atol.is_finite() && rtol.is_finite()) {
        return Err(Error::Config("--atol and --rtol must be finite and >= 0".into()));
    }
    let (spec, events) = read_events(spec, input)?;
    let at = theirs.display().to_string();
    let theirs = backfill::read(&spec, &streamscore::io::read_input(theirs)?, &at)?;
    let mut stage = Features::new(spec.clone());
    let (rows, refused) = offline::run(&mut stage, &events, 65_536)?;
    let refused: Vec<usize> = refused.into_iter().map(|(i, _)| i).collect();
    let report =
        backfill::compare(&spec, &events, &rows, &refused, &theirs, Tolerance { atol, rtol });
    let sink = open_output(output)?;
    let mut w = std::io::BufWriter::new(sink);
    let io = |e| Error::io(output, e);
    writeln!(
        w,
        "rows: {} matched, {} only in {at}, {} only ours ({} events computed, {} refused by the stage, {} unreadable)",
        report.matched,
        report.only_theirs.len(),
        report.only_ours.len(),
        events.len() - refused.len(),
        refused.len(),
        events.refused.len()
    )
    .map_err(io)?;
    writeln!(w, "tolerance: |ours - theirs| <= {atol:e} + {rtol:e} * |theirs|").map_err(io)?;
    writeln!(
        w,
        "{:<32} {:>10} {:>10} {:>12} {:>12}",
        "feature", "compared", "mismatches", "max_abs", "max_rel"
    )
    .map_err(io)?;
    for f in &report.features {
        writeln!(
            w,
            "{:<32} {:>10} {:>10} {:>12.3e} {:>12.3e}",
            f.name, f.compared, f.mismatches, f.max_abs, f.max_rel
        )
        .map_err(io)?;
    }
    for f in report.features.iter().filter(|f| f.mismatches > 0) {
        for (line, ours, theirs) in &f.first {
            writeln!(w, "mismatch: {} at line {line}: ours {ours}, theirs {theirs}", f.name)
                .map_err(io)?;
        }
    }
    for line in report.only_theirs.iter().take(5) {
        writeln!(w, "only theirs: line {line}").map_err(io)?;
    }
    for &i in report.only_ours.iter().take(5) {
        writeln!(w, "only ours: line {} of {input}", events.lines[i]).map_err(io)?;
    }
    if !theirs.absent.is_empty() {
        writeln!(w, "not compared (absent from {at}): {}", theirs.absent.join(", ")).map_err(io)?;
    }
    if !theirs.ignored.is_empty() {
        writeln!(w, "ignored columns: {}", theirs.ignored.join(", ")).map_err(io)?;
    }
    w.flush().map_err(io)?;
    let (bad, unmatched) = (report.mismatches(), report.only_theirs.len() + report.only_ours.len());
    if bad + unmatched > 0 {
        return Err(Error::Input {
            at: at.clone(),
            message: format!(
                "backfill differs: {bad} values beyond the tolerance, {unmatched} rows unmatched"
            ),
        });
    }
    Ok(())
}

/// `streamscore features --labels`: the point-in-time training set.
fn training_set(
    spec: &std::path::Path,
    input: &str,
    output: &str,
    labels: &std::path::Path,
    label_column: &str,
    max_age: Option<&str>,
    format: Option<&str>,
) -> Result<(), Error> {
    use streamscore::features::{Features, offline, parse_duration};
    use streamscore::io::table::{Table, Values};
    let format = streamscore::io::table::Format::choose(format, output)?;
    let max_age_ms = max_age.map(parse_duration).transpose()?;
    let (spec, events) = read_events(spec, input)?;
    let at = labels.display().to_string();
    let labels =
        offline::read_labels(&spec, &streamscore::io::read_input(labels)?, &at, label_column)?;
    let mut stage = Features::new(spec.clone());
    let (rows, refused) = offline::run(&mut stage, &events, 65_536)?;
    let refused: Vec<usize> = refused.into_iter().map(|(i, _)| i).collect();
    let joined = offline::point_in_time(&events, &refused, &labels, max_age_ms);
    let n_out = spec.names.len();
    let n = joined.len();
    let mut columns: Vec<Vec<f32>> = vec![Vec::with_capacity(n); n_out];
    let mut event_times = Vec::with_capacity(n);
    let mut reasons = Vec::with_capacity(n);
    let (mut matched, mut no_event, mut stale) = (0usize, 0usize, 0usize);
    for j in &joined {
        match *j {
            Ok(i) => {
                matched += 1;
                for (c, &v) in columns.iter_mut().zip(&rows[i * n_out..(i + 1) * n_out]) {
                    c.push(v);
                }
                event_times.push(Some(events.times[i]));
                reasons.push(None);
            }
            Err(why) => {
                let reason = match why {
                    offline::Unmatched::NoEvent => {
                        no_event += 1;
                        "no event of the key at or before the label's time"
                    }
                    offline::Unmatched::TooOld => {
                        stale += 1;
                        "stale: the key's latest event is older than --max-age"
                    }
                };
                columns.iter_mut().for_each(|c| c.push(f32::NAN));
                event_times.push(None);
                reasons.push(Some(reason.to_string()));
            }
        }
    }
    let mut table = Table::new();
    table.push(
        spec.key.clone(),
        Values::Text(labels.key_text.iter().cloned().map(Some).collect()),
    )?;
    table
        .push(spec.time.clone(), Values::Int64(labels.times.iter().copied().map(Some).collect()))?;
    table.push(label_column, Values::Number(labels.values.clone()))?;
    for (name, col) in spec.names.iter().zip(columns) {
        table.push(name.clone(), Values::Float32(col))?;
    }
    table.push("event_time", Values::Int64(event_times))?;
    table.push("error", Values::Text(reasons))?;
    write_table(&table, format, output)?;
    eprintln!(
        "{} labels: {matched} with features, {no_event} with no earlier event, {stale} stale, {} refused at reading; {} events: {} computed, {} refused",
        labels.keys.len() + labels.refused.len(),
        labels.refused.len(),
        events.len() + events.refused.len(),
        events.len() - refused.len(),
        events.refused.len() + refused.len()
    );
    for (line, e) in labels.refused.iter().take(10) {
        eprintln!("labels line {line}: {e}");
    }
    Ok(())
}

/// The library's log lines (ours and ONNX Runtime's) on stderr, at the level
/// `STREAMSCORE_LOG` names (`error`, `warn`, `info`, `debug`, `trace`), or `info` with
/// `score --verbose`; silent otherwise, so a failure stays one `error:` line.
struct StderrLog(log::LevelFilter);

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.0
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_ascii_lowercase();
            eprintln!("{level}: {}: {}", record.target(), record.args());
        }
    }
    fn flush(&self) {}
}

fn init_log(verbose: bool) {
    let level = std::env::var("STREAMSCORE_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if verbose { log::LevelFilter::Info } else { log::LevelFilter::Off });
    if log::set_logger(Box::leak(Box::new(StderrLog(level)))).is_ok() {
        log::set_max_level(level);
    }
}

/// A usage error as one `error:` line (clap's own rendering spans several lines).
fn usage_error(e: &clap::Error) -> String {
    // The message is clap's first paragraph (e.g. the missing flags, one per line); the
    // usage and tips after it are what `--help` shows.
    let text = e.to_string();
    let first: Vec<&str> =
        text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let message = first.join(" ");
    format!("error: {} (see --help)", message.trim_start_matches("error: "))
}

fn main() -> ExitCode {
    // Mesa's device-select layer prints `XDG_RUNTIME_DIR is invalid` lines on machines
    // without a session; they are noise before our one error line.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: single-threaded at this point (nothing has been spawned yet).
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: their text, on stdout, and success.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", usage_error(&e));
            return ExitCode::FAILURE;
        }
    };
    // A closed stdout (`score ... | head -1`) ends a command quietly, as it does a C tool,
    // rather than as an "error: Broken pipe" line or a panic in `println!`. Not `serve`: a
    // server keeps SIGPIPE ignored, so a peer that closed its socket (a broker, an HTTP
    // client) is a write error it handles, not a signal that kills it.
    #[cfg(unix)]
    if !matches!(cli.command, Command::Serve(_)) {
        // SAFETY: restoring a signal's default disposition at start-up, before any thread
        // exists (parsing the arguments starts none); no handler code of ours runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_log(matches!(cli.command, Command::Score { verbose: true, .. }));
    let result = match cli.command {
        Command::Score {
            model,
            input,
            output,
            raw,
            no_header,
            backend,
            cpu_threads,
            gpu_software,
            chunk_rows,
            verbose,
        } => {
            let flags = spec::BackendFlags {
                backend: &backend,
                cpu_threads,
                kernel: None,
                algorithm: None,
                gpu_software,
                gpu_strategy: "auto",
            };
            let how = ScoreArgs { raw, no_header, chunk_rows, verbose };
            spec::spec(&flags).and_then(|spec| score(&model, &input, &output, &spec, &how))
        }
        Command::Inspect { model } => inspect(&model),
        Command::Features { spec, input, output, compare: Some(theirs), atol, rtol, .. } => {
            backfill(&spec, &input, &output, &theirs, atol, rtol)
        }
        Command::Features { spec, input, output, labels: None, format, .. } => {
            features(&spec, &input, &output, format.as_deref())
        }
        Command::Features {
            spec,
            input,
            output,
            labels: Some(labels),
            label_column,
            max_age,
            format,
            ..
        } => training_set(
            &spec,
            &input,
            &output,
            &labels,
            &label_column,
            max_age.as_deref(),
            format.as_deref(),
        ),
        Command::Bench(args) => bench::run(*args),
        Command::Drift(args) => drift::run(&args),
        Command::Profile(args) => profile::run(&args),
        #[cfg(feature = "audit")]
        Command::Monitor(args) => monitor::run(&args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every variant's message already names its cause.
            let mut msg = format!("error: {e}");
            if matches!(e, Error::MissingColumn { .. }) {
                msg.push_str(" (pass --no-header for a CSV without a header line)");
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// `score`'s flags other than the paths and the backend.
struct ScoreArgs {
    raw: bool,
    no_header: bool,
    chunk_rows: usize,
    verbose: bool,
}

fn score(
    model: &Path,
    input: &str,
    output: &str,
    spec: &BackendSpec,
    how: &ScoreArgs,
) -> Result<(), Error> {
    let model = load_model(model)?;
    let names = model.feature_names();
    let scorer = spec.select(model)?;
    let reader: Box<dyn Read> = if input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(input).map_err(|e| Error::io(input, e))?)
    };
    let columns = if how.no_header { Columns::Positional } else { Columns::ByName };
    let mut rows = RowStream::new(Box::new(BufReader::new(reader)), columns, &names, input)?;
    let kind = if how.raw { Output::Raw } else { Output::Transformed };
    let width = scorer.output_width(kind);
    let sink = open_output(output)?;
    let mut w = BufWriter::new(sink);
    let (mut scores, mut total) = (Vec::new(), 0usize);
    // A chunk's answers stay within SCORE_BUFFER values however wide the output (a multiclass
    // model with 65,536 classes gives 65,536 values per row).
    let chunk = chunk_rows(how.chunk_rows, width);
    while let Some(batch) = rows.next_chunk(chunk)? {
        scores.clear();
        scores.resize(batch.n_rows() * width, 0.0);
        scorer.score_batch(&batch, kind, &mut scores)?;
        write_scores(&mut w, &scores, width).map_err(|e| Error::io(output, e))?;
        total += batch.n_rows();
    }
    w.flush().map_err(|e| Error::io(output, e))?;
    if how.verbose {
        eprintln!("backend {} (spec {spec}); {total} rows", scorer.name());
    }
    Ok(())
}

/// The most output values `score` holds at a time (64 MiB of f32).
const SCORE_BUFFER: usize = 1 << 24;

/// Rows per chunk: as asked (at least 1), but never more answers than [`SCORE_BUFFER`].
fn chunk_rows(asked: usize, width: usize) -> usize {
    asked.clamp(1, (SCORE_BUFFER / width.max(1)).max(1))
}

fn inspect(path: &Path) -> Result<(), Error> {
    let start = Instant::now();
    let model = load_model(path)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    match &model {
        Model::Forest(forest) => print!("{}", describe(forest)),
        Model::Onnx(onnx) => print!("{}", describe_onnx(onnx)),
    }
    println!("load time: {load_ms:.3} ms");
    // Lineage: what a runtime serving this file records for it.
    let bytes = streamscore::io::read_input(path)?;
    println!("sha256: {}", streamscore::Lineage::sha256_of(&bytes));
    println!("default version: {}", streamscore::Lineage::default_version(&bytes));
    Ok(())
}

/// Text from a model file as `inspect` prints it: control characters (a newline would start a
/// fake `key: value` line of the report) escaped as Rust does (`\n`, `\u{1b}`).
fn printable(text: &str) -> String {
    text.escape_debug().to_string()
}

/// ONNX's name for a `TensorProto.DataType` code (onnx.proto), or the code when unknown.
fn element_type(code: i32) -> String {
    const NAMES: [&str; 17] = [
        "undefined",
        "float",
        "uint8",
        "int8",
        "uint16",
        "int16",
        "int32",
        "int64",
        "string",
        "bool",
        "float16",
        "double",
        "uint32",
        "uint64",
        "complex64",
        "complex128",
        "bfloat16",
    ];
    match usize::try_from(code).ok().and_then(|c| NAMES.get(c)) {
        Some(name) => (*name).to_string(),
        None => format!("element type {code}"),
    }
}

/// The `inspect` report for an ONNX model.
fn describe_onnx(m: &OnnxModel) -> String {
    let shape = |t: &TensorInfo| {
        let dims: Vec<String> =
            t.dims.iter().map(|d| d.map_or("?".to_string(), |d| d.to_string())).collect();
        format!("{} [{}] ({})", printable(&t.name), dims.join(", "), element_type(t.elem_type))
    };
    let outputs: Vec<String> = m.outputs().iter().map(shape).collect();
    let mut s = format!(
        "format: ONNX\ninput: {}\nfeatures: {}\noutputs: {}\n",
        shape(m.input()),
        m.n_features(),
        outputs.join("; ")
    );
    match m.dense() {
        Ok(net) => {
            let layers: Vec<String> = net
                .layers()
                .iter()
                .map(|l| format!("{}x{} {:?}", l.n_in, l.n_out, l.activation))
                .collect();
            s += &format!(
                "dense net: yes\ninput ops: {}\nlayers: {}\nmultiply-adds per row: {}\n",
                net.input_ops().len(),
                layers.join(", "),
                net.macs_per_row()
            );
        }
        Err(e) => s += &format!("dense net: no ({e})\n"),
    }
    s
}

/// The `inspect` report, one `key: value` per line.
fn describe(forest: &Forest) -> String {
    let depths: Vec<usize> = forest.trees().iter().map(|t| t.depth()).collect();
    let nodes: usize = forest.trees().iter().map(|t| t.nodes.len()).sum();
    let leaves: usize = forest.trees().iter().map(|t| t.leaves()).sum();
    let categorical = forest
        .trees()
        .iter()
        .flat_map(|t| &t.nodes)
        .filter(|n| matches!(n, Node::Split { test: Test::Categorical { .. }, .. }))
        .count();
    let mean_depth = depths.iter().sum::<usize>() as f64 / depths.len().max(1) as f64;
    let names: Vec<String> = forest.feature_names().iter().map(|n| printable(n)).collect();
    let names = names.join(" ");
    let names = if names.len() > 200 {
        format!("{}...", &names[..names.floor_char_boundary(200)])
    } else {
        names
    };
    let objective =
        if forest.objective().is_empty() { "(none)".into() } else { printable(forest.objective()) };
    format!(
        "format: {}\nobjective: {objective}\ntransform: {:?}\ntrees: {}\nclasses: {}\n\
         features: {}\nfeature names: {names}\nnodes: {nodes}\nleaves: {leaves}\n\
         categorical splits: {categorical}\ndepth: min {} mean {mean_depth:.2} max {}\n",
        forest.format(),
        forest.transform(),
        forest.trees().len(),
        forest.n_groups(),
        forest.n_features(),
        depths.iter().min().unwrap_or(&0),
        depths.iter().max().unwrap_or(&0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4.9 MB model with 65,536 classes once made `score` hold 65,536 rows x 65,536 answers
    /// (5.5 GB resident for a 20,000-row input): chunks now shrink with the output width.
    #[test]
    fn chunks_stay_within_the_answer_buffer() {
        assert_eq!(chunk_rows(65_536, 1), 65_536);
        assert_eq!(chunk_rows(65_536, 65_536), SCORE_BUFFER / 65_536);
        assert_eq!(chunk_rows(0, 3), 1);
        assert_eq!(chunk_rows(7, usize::MAX), 1);
        assert!(chunk_rows(usize::MAX, 10) * 10 <= SCORE_BUFFER);
    }
}
