//! Monitoring the fraud stream end to end: drift injected at known times (fuel costs a third
//! from day 24; a new fraud scheme in grocery from day 26), labels six hours late. Prints when
//! the monitor saw the data drift and the error stream's detector the concept drift, and the
//! online ROC AUC per day. `tests/fraud_drift.rs` asserts the same run.
//!
//! `cargo run --release --example fraud_drift`

#[path = "fraud/drift.rs"]
mod drift;

fn main() -> Result<(), streamscore::Error> {
    let o = drift::run()?;
    println!(
        "data drift injected at day {:.2}; concept drift at day {:.2}; labels {} h late",
        drift::day(drift::DATA_DRIFT_MS),
        drift::day(drift::CONCEPT_DRIFT_MS),
        drift::LABEL_DELAY_MS / 3_600_000
    );
    match o.data_drift {
        Some((start, closed)) => println!(
            "data drift on `amount` detected in the window from day {:.2}, alerted when it closed at day {:.2}",
            drift::day(start),
            drift::day(closed)
        ),
        None => println!("no data drift detected"),
    }
    let mut by_window: std::collections::BTreeMap<u64, Vec<&str>> = Default::default();
    for (start, column) in &o.alerts {
        by_window.entry(*start).or_default().push(column);
    }
    for (start, columns) in &by_window {
        println!("  window from day {:.2}: {} drifted", drift::day(*start), columns.join(", "));
    }
    let times: Vec<String> =
        o.concept_drift.iter().map(|&t| format!("{:.2}", drift::day(t))).collect();
    println!(
        "concept drift detected by DDM on the errors at day(s) {} (label times)",
        times.join(", ")
    );
    println!("online ROC AUC per day of prediction:");
    for (start, n, auc) in &o.auc_per_day {
        let auc = auc.map_or("-".to_owned(), |a| format!("{a:.3}"));
        println!("  day {:>5.2}: {n:>4} labelled, AUC {auc}", drift::day(*start));
    }
    Ok(())
}
