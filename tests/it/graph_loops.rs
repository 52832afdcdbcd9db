//! Graph reads cannot loop: a self-referencing `@odata.nextLink` and a scope larger than
//! `sync.max_users` abort the cycle as an incomplete read, and nothing changes.

use crate::sync_graph::assert_failed;
use crate::sync_graph_support::World;

const LYNNE: &str = "lynne.robbins@contoso.com";

backend_test! {
    /// A nextLink that points back at its own page ends the read at the second page, with an
    /// error naming the loop; the user unassigned meanwhile is not deleted.
    async fn a_self_referencing_next_link_aborts_the_cycle(backend) {
        let w = World::new(backend).await;
        let seed = w.cycle().await;
        assert!(seed.error.is_none(), "{seed:#?}");
        let lynne = w.oid(LYNNE);
        w.sim.with_tenant(|t| assert!(t.unassign(&lynne)));
        let log_rows = w.log().await.len();
        let before = w.sim.stats().graph_requests;
        w.sim.with_faults(|f| f.loop_next_link = true);
        let r = w.cycle().await;
        assert_failed(&w, &r, "repeated_page", log_rows, "looping nextLink").await;
        let error = r.error.as_ref().expect("an error");
        assert!(error.message.contains("links back to a page already read"), "{}", error.message);
        // The first page, the page its link names, and nothing more (no 10,000-page walk).
        let requests = w.sim.stats().graph_requests - before;
        assert!(requests <= 4, "{requests} Graph requests");
        // With a page cap of 1 the cap speaks first, and names the real setting.
        let mut w = w;
        w.env.settings.max_pages = 1;
        let r = w.cycle().await;
        assert_failed(&w, &r, "page_cap", log_rows, "page cap").await;
        let error = r.error.as_ref().expect("an error");
        assert!(error.message.contains("raise sync.max_pages"), "{}", error.message);
        w.env.settings.max_pages = 10_000;
        w.sim.with_faults(|f| f.loop_next_link = false);
        let r = w.cycle().await;
        assert!(r.error.is_none(), "{r:#?}");
        assert!(w.user(LYNNE).await.is_none(), "a complete read deprovisions");
        w.finish().await;
    }
}

backend_test! {
    /// More users in scope than `sync.max_users` is an incomplete read; the message names the
    /// setting.
    async fn more_users_than_the_cap_abort_the_cycle(backend) {
        let mut w = World::new(backend).await;
        let seed = w.cycle().await;
        assert!(seed.error.is_none(), "{seed:#?}");
        let lynne = w.oid(LYNNE);
        w.sim.with_tenant(|t| assert!(t.unassign(&lynne)));
        let log_rows = w.log().await.len();
        w.env.settings.max_users = 5;
        let r = w.cycle().await;
        assert_failed(&w, &r, "user_cap", log_rows, "user cap").await;
        let error = r.error.as_ref().expect("an error");
        assert!(error.message.contains("sync.max_users"), "{}", error.message);
        // 11 enabled users and 3 disabled ones are in scope now.
        w.env.settings.max_users = 14;
        let r = w.cycle().await;
        assert!(r.error.is_none(), "exactly at the cap: {r:#?}");
        assert!(w.user(LYNNE).await.is_none());
        w.finish().await;
    }
}
