//! A cycle's plan for people: its size by action, and the first changes one by one.

use super::{PlannedChange, PlannedCounts};
use crate::domain::directory::diff_attributes;
use crate::sync::plan::Plan;

/// The plan's size by action.
pub fn count(plan: &Plan) -> PlannedCounts {
    PlannedCounts {
        create: plan.creates.len(),
        update: plan.updates.len(),
        delete: plan.deprovisions.len(),
        staged_delete: plan.staged.len(),
        skip: plan.skips.len(),
    }
}

/// The first `limit` changes of the plan for people and the dry-run output: deletions first (they
/// matter most), then staged deletions, updates, creates and skips.
pub fn describe(plan: &Plan, limit: usize) -> Vec<PlannedChange> {
    let mut out = Vec::new();
    for (list, action) in [
        (&plan.deprovisions, "delete"),
        (&plan.staged, "staged_delete"),
    ] {
        for d in list.iter().take(limit.saturating_sub(out.len())) {
            out.push(PlannedChange {
                action,
                user_name: d.user_name.clone(),
                object_id: d.object_id.as_ref().map(|o| o.to_string()),
                detail: Some(d.reason.as_str().to_owned()),
                changes: Vec::new(),
            });
        }
    }
    for u in plan.updates.iter().take(limit.saturating_sub(out.len())) {
        out.push(PlannedChange {
            action: "update",
            user_name: u.desired.user_name.to_string(),
            object_id: Some(u.object_id.to_string()),
            detail: match (&u.adopted_from, u.adopted) {
                (Some(from), true) => Some(format!("adopted from {from}: matched by userName")),
                (Some(from), false) => Some(format!("adopted from {from}: matched by object id")),
                (None, true) => Some("adopted: matched by userName".to_owned()),
                (None, false) => None,
            },
            changes: u.changes.clone(),
        });
    }
    for c in plan.creates.iter().take(limit.saturating_sub(out.len())) {
        out.push(PlannedChange {
            action: "create",
            user_name: c.desired.user_name.to_string(),
            object_id: Some(c.object_id.to_string()),
            detail: Some(crate::sync::mapping::describe_assignments(&c.assigned_via)),
            changes: diff_attributes(None, &c.desired),
        });
    }
    for s in plan.skips.iter().take(limit.saturating_sub(out.len())) {
        out.push(PlannedChange {
            action: "skip",
            user_name: s.user_name.clone().unwrap_or_default(),
            object_id: Some(s.object_id.to_string()),
            detail: Some(s.reason.to_string()),
            changes: Vec::new(),
        });
    }
    out
}
