//! `essentry-sync demo --serve`: after the demo, the operator console on the demo data. The
//! Graph simulator keeps running (so **Run now**, **Dry run** and **Provision on demand** work
//! against the sample tenant), the outbox worker delivers to `.eml` files, and a fresh admin
//! token is printed with the console's URL. Ctrl-C ends it.

use anyhow::{Context, Result};

use super::Env;
use crate::admin_tokens;
use crate::http::{self, AppState};
use crate::secrets::SecretKey;

/// Serves the console on `listen` until Ctrl-C.
pub(super) async fn serve(env: Env, key: SecretKey, listen: &str) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr()?;
    let name = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (row, token) = admin_tokens::create(&env.store, &name, None, None, env.clock.now()).await?;
    let mail = crate::notify::DeliveryWorker::from_settings(
        env.store.clone(),
        env.clock.clone(),
        &env.settings.mail,
    )?
    .start();
    let mut settings = env.settings;
    settings.server.listen = local.to_string();
    settings.server.public_url = Some(format!("http://{local}"));
    let state = AppState::with_key(env.store, env.clock, settings, Some(key));
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listener,
        state.clone(),
        stop.clone().cancelled_owned(),
    ));
    println!(
        "\n=== The operator console on the demo data ===\n\
         Open  http://{local}/admin/\n\
         Sign in with this admin token (a fresh one, named {name:?}):\n  {token}\n\
         The Graph simulator keeps running, so Run now, Dry run and Provision on demand work.\n\
         Ctrl-C stops the console.",
        name = row.name,
        token = token.expose(),
    );
    super::shutdown_signal().await;
    stop.cancel();
    mail.stop(std::time::Duration::from_secs(5)).await;
    let _ = server.await;
    state.store.close().await;
    Ok(())
}
