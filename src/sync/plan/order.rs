//! The order of a plan's lists: by userName, with each rename moved after the rename that frees
//! its target (so the apply runs them in a consistent order inside one transaction).

use std::collections::HashMap;

use super::{Plan, PlannedDeprovision, PlannedSkip, PlannedUpdate, Stored};

/// Sorts every list by userName; then moves each rename after the rename that frees its target.
pub(super) fn order(out: &mut Plan, stored: &Stored<'_>, update_of: &HashMap<usize, usize>) {
    fn fold(s: &str) -> String {
        s.to_lowercase()
    }
    out.creates.sort_by(|a, b| {
        (a.desired.user_name.key(), &a.object_id).cmp(&(b.desired.user_name.key(), &b.object_id))
    });
    let by_name = |a: &PlannedDeprovision, b: &PlannedDeprovision| {
        (fold(&a.user_name), &a.user_id).cmp(&(fold(&b.user_name), &b.user_id))
    };
    out.deprovisions.sort_by(by_name);
    out.staged.sort_by(by_name);
    out.skips.sort_by(|a, b| {
        let key = |s: &PlannedSkip| (s.user_name.as_deref().map(fold), s.object_id.clone());
        key(a).cmp(&key(b))
    });

    // Stored user index of each update, before sorting.
    let mut stored_of: Vec<usize> = vec![0; out.updates.len()];
    for (&s, &u) in update_of {
        stored_of[u] = s;
    }
    let mut idx: Vec<usize> = (0..out.updates.len()).collect();
    idx.sort_by(|&a, &b| {
        let (ua, ub) = (&out.updates[a], &out.updates[b]);
        (ua.desired.user_name.key(), &ua.user_id).cmp(&(ub.desired.user_name.key(), &ub.user_id))
    });
    // The update that must run before update `u`: the one renaming away the holder of u's target.
    let before = |u: usize| -> Option<usize> {
        let s = stored_of[u];
        let target = out.updates[u].desired.user_name.key();
        if target == stored.key(s) {
            return None;
        }
        let h = *stored.by_name.get(target)?;
        (h != s).then(|| update_of.get(&h).copied()).flatten()
    };
    let mut emitted = vec![false; out.updates.len()];
    let mut sequence = Vec::with_capacity(out.updates.len());
    for &u in &idx {
        // Walk back to the first rename of the chain not yet emitted; `emitted` doubles as the
        // guard against a cycle (the planner never produces one).
        let mut chain = Vec::new();
        let mut cur = Some(u);
        while let Some(c) = cur.filter(|&c| !emitted[c]) {
            emitted[c] = true;
            chain.push(c);
            cur = before(c);
        }
        sequence.extend(chain.into_iter().rev());
    }
    let mut slots: Vec<Option<PlannedUpdate>> = std::mem::take(&mut out.updates)
        .into_iter()
        .map(Some)
        .collect();
    out.updates = sequence
        .into_iter()
        .filter_map(|u| slots[u].take())
        .collect();
}
