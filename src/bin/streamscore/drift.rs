//! `streamscore drift`: a drift detector over a file of values, printing where it fired.
//!
//! The output is a stable contract: one 0-based index per line for each drift, and with
//! `--warnings` a `warning INDEX` line for each warning, in stream order (River's two flags:
//! EDDM can raise both on one value, printed drift first).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::time::{Duration, Instant};

use clap::Args;
use streamscore::Error;
use streamscore::monitor::drift::{Detector, Kind, Param};

/// Values read, then fed to the detector, at a time (memory stays bounded; the update loop
/// alone is timed).
const CHUNK: usize = 1 << 16;

/// The longest line read (a number is far shorter; anything longer is not one).
const MAX_LINE: u64 = 1024;

/// `streamscore drift`'s flags.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// adwin, page-hinkley, ddm, eddm, hddm-a, hddm-w or kswin (River 0.26's algorithms).
    #[arg(long)]
    detector: String,
    /// A parameter by River's name, e.g. `--set delta=0.01 --set clock=1` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// One value per line (0 or 1 for ddm, eddm, hddm-a and hddm-w); `-` is stdin.
    #[arg(long)]
    input: String,
    /// Also print `warning INDEX` for each warning (ddm, eddm, hddm-a, hddm-w).
    #[arg(long)]
    warnings: bool,
    /// Print the update loop's time per value on stderr (reading and printing excluded).
    #[arg(long)]
    timing: bool,
}

/// Runs the command.
pub fn run(args: &DriftArgs) -> Result<(), Error> {
    let kind: Kind = args.detector.parse()?;
    let params = args.params.iter().map(|p| p.parse()).collect::<Result<Vec<Param>, _>>()?;
    let mut detector = Detector::new(kind, &params)?;
    let reader: Box<dyn Read> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.input)
            .map_err(|e| Error::Io { path: args.input.clone().into(), source: e })?;
        Box::new(file)
    };
    let mut reader = BufReader::new(reader);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let io = |e: std::io::Error| Error::Io { path: "stdout".into(), source: e };
    let (mut values, mut found) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
    let mut first = 0u64;
    let (mut line, mut line_no) = (Vec::new(), 0u64);
    let mut spent = Duration::ZERO;
    loop {
        values.clear();
        while values.len() < CHUNK {
            line.clear();
            let n = reader
                .by_ref()
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::Io { path: args.input.clone().into(), source: e })?;
            if n == 0 {
                break;
            }
            line_no += 1;
            values.push(parse_value(&line, &args.input, line_no)?);
        }
        if values.is_empty() {
            break;
        }
        found.clear();
        let start = Instant::now();
        let fed = detector.update_many(&values, &mut found);
        spent += start.elapsed();
        fed.map_err(|e| match e {
            Error::Input { message, .. } => {
                let at = line_no - values.len() as u64 + (detector.seen() - first) + 1;
                Error::Input { at: format!("{} line {at}", args.input), message }
            }
            other => other,
        })?;
        first = detector.seen();
        for f in &found {
            if f.drift {
                writeln!(out, "{}", f.index).map_err(io)?;
            }
            if f.warning && args.warnings {
                writeln!(out, "warning {}", f.index).map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)?;
    if args.timing {
        let n = detector.seen();
        let per = if n == 0 { 0.0 } else { spent.as_secs_f64() * 1e9 / n as f64 };
        eprintln!(
            "{kind}: {n} values, {:.3} s in updates, {per:.1} ns per value",
            spent.as_secs_f64()
        );
    }
    Ok(())
}

fn parse_value(line: &[u8], input: &str, line_no: u64) -> Result<f64, Error> {
    let bad = |message: String| Error::Input { at: format!("{input} line {line_no}"), message };
    if line.len() as u64 > MAX_LINE {
        return Err(bad(format!("line longer than {MAX_LINE} bytes")));
    }
    let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?.trim();
    text.parse::<f64>().map_err(|_| bad(format!("`{text}` is not a number")))
}
