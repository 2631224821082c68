//! The monitoring example (`examples/fraud_drift.rs`), asserted: the injected data drift is
//! seen within one window of its start and not before (no false alarm in the stable weeks),
//! the concept drift is detected once its labels have arrived and not before, and the online
//! AUC, perfect before, collapses after it.

// Offline features read the stream's CSV.
#![cfg(feature = "csv")]

#[path = "../examples/fraud/drift.rs"]
mod drift;

use drift::{CONCEPT_DRIFT_MS, DATA_DRIFT_MS, DAY, LABEL_DELAY_MS, START};

#[test]
fn data_drift_then_concept_drift_are_detected_when_they_happen() {
    let o = drift::run().unwrap();
    // Data drift: the first alert on `amount` is in the window holding the drift's start or
    // the next one, and it closes within two windows of the start.
    let (start, closed) = o.data_drift.expect("the data drift is detected");
    assert!(
        start + DAY > DATA_DRIFT_MS - DAY && start <= DATA_DRIFT_MS + DAY,
        "window from day {}",
        drift::day(start)
    );
    assert!(closed <= DATA_DRIFT_MS + 2 * DAY);
    // No alert at all from the third day (the windowed features' cold start is over) until
    // the drift: no false alarm in three stable weeks.
    let early: Vec<_> = o
        .alerts
        .iter()
        .filter(|(w, _)| *w >= START + 2 * DAY && *w + DAY <= DATA_DRIFT_MS)
        .collect();
    assert!(early.is_empty(), "{early:?}");
    assert!(o.alerts.iter().filter(|(_, c)| c == "amount").all(|(w, _)| *w + DAY > DATA_DRIFT_MS));
    // Concept drift: detected from the labels of the new scheme's first events, and not
    // before they could arrive.
    let first = *o.concept_drift.first().expect("the concept drift is detected");
    assert!(first >= CONCEPT_DRIFT_MS + LABEL_DELAY_MS, "day {}", drift::day(first));
    assert!(first <= CONCEPT_DRIFT_MS + LABEL_DELAY_MS + DAY, "day {}", drift::day(first));
    // Online AUC: perfect while nothing drifts (on days with both classes), far from it once
    // the new scheme runs.
    for &(day, n, auc) in &o.auc_per_day {
        if let Some(auc) = auc {
            if day + DAY <= CONCEPT_DRIFT_MS {
                assert!(auc > 0.99, "day {}: {auc} over {n}", drift::day(day));
            } else if day >= CONCEPT_DRIFT_MS && n > 400 {
                assert!(auc < 0.8, "day {}: {auc} over {n}", drift::day(day));
            }
        }
    }
}
