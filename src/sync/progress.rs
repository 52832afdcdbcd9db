//! Live progress of a running cycle, for whoever started it and wants to show it (the console's
//! progress bar): a task-local [`ProgressCell`] that the cycle writes its phase and counts to.
//! A cycle run without one (the schedule, the CLI) reports into nothing.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Where a cycle is and what it has done so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Progress {
    /// `starting`, `reading`, `planning`, `applying`, then `finished` (set by the caller).
    pub phase: String,
    /// Graph requests sent so far (one per page read, plus retries and batches).
    pub graph_requests: u64,
    /// Users in scope that the read returned.
    pub users_read: u64,
    /// Changes the plan holds (creates, updates, deletions, staged deletions, skips).
    pub changes_planned: u64,
    /// Creates, updates and deletions applied.
    pub changes_applied: u64,
}

/// A shared progress record a caller reads while the cycle writes it.
pub type ProgressCell = Arc<Mutex<Progress>>;

tokio::task_local! {
    static CELL: ProgressCell;
}

/// Runs `fut` (a cycle) with `cell` receiving its progress.
pub async fn with_progress<F: std::future::Future>(cell: ProgressCell, fut: F) -> F::Output {
    CELL.scope(cell, fut).await
}

/// Updates the current task's progress record, when it has one.
pub(crate) fn report(update: impl FnOnce(&mut Progress)) {
    let _ = CELL.try_with(|cell| {
        if let Ok(mut p) = cell.lock() {
            update(&mut p);
        }
    });
}

/// Whether the current task reports progress (so a reader is worth polling).
pub(crate) fn observed() -> bool {
    CELL.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_reach_the_cell_only_inside_the_scope() {
        let cell = ProgressCell::default();
        report(|p| p.phase = "outside".to_owned());
        with_progress(cell.clone(), async {
            assert!(observed());
            report(|p| {
                p.phase = "reading".to_owned();
                p.graph_requests = 3;
            });
        })
        .await;
        assert!(!observed());
        let seen = cell.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(seen.phase, "reading");
        assert_eq!(seen.graph_requests, 3);
    }
}
