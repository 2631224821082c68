//! `streamscore monitor`: the drift monitor's report, computed offline from an audit log.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use streamscore::Error;
use streamscore::monitor::profile::{Monitor, MonitorConfig};
use streamscore::monitor::reference::Reference;

/// `streamscore monitor`'s flags.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// An audit file (`.arrow` or `.arrow.partial`) or a directory of them (read oldest first).
    #[arg(long)]
    audit: PathBuf,
    /// The training reference (`streamscore profile`).
    #[arg(long)]
    reference: PathBuf,
    /// Window length in ms (the runtime's default: a minute).
    #[arg(long, default_value_t = 60_000)]
    window_ms: u64,
    /// Least events in a window for an alert.
    #[arg(long, default_value_t = 1_000)]
    min_events: u64,
    /// Quantiles from a DDSketch per column with this relative accuracy (e.g. 0.01) instead
    /// of from the reference's grid.
    #[arg(long, value_name = "ALPHA")]
    quantile_sketch: Option<f64>,
}

/// Runs the command: prints the report as JSON (windows, cumulative profiles, alerts).
pub fn run(args: &MonitorArgs) -> Result<(), Error> {
    let reference = Arc::new(Reference::from_path(&args.reference)?);
    let config = MonitorConfig {
        window_ms: args.window_ms,
        min_events: args.min_events,
        quantile_sketch: args.quantile_sketch,
        ..MonitorConfig::new(reference)
    };
    let mut monitor = Monitor::new(config)?;
    let files = if args.audit.is_dir() {
        streamscore::audit::files(&args.audit)?
    } else {
        vec![args.audit.clone()]
    };
    let mut fed = 0;
    for file in &files {
        let log = streamscore::audit::read(file)?;
        fed += log.monitor(&mut monitor)?;
    }
    monitor.flush(u64::MAX);
    let report = monitor.report();
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| Error::Config(format!("report: {e}")))?;
    println!("{json}");
    eprintln!(
        "{fed} records from {} files, {} windows, {} alerts",
        files.len(),
        report.windows.len(),
        report.alerts_total
    );
    Ok(())
}
