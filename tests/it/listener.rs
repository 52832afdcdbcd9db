//! The listener's limits over raw TCP: a connection that sends half a request head and idles is
//! closed after `server.header_read_timeout_secs`; a request whose body never finishes is
//! answered 408 after `server.request_timeout_secs`; no more than `server.max_connections`
//! connections are served at once.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestApp;

fn addr(app: &TestApp) -> String {
    app.state.settings.server.listen.clone()
}

/// Reads until the server closes the connection (or `limit` passes): what it sent, and when.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| {
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    })
}

backend_test! {
    /// Half a request head, then silence: the server closes the connection.
    async fn a_half_sent_request_head_is_closed(backend) {
        let app = TestApp::spawn_with(backend, |s| s.server.header_read_timeout_secs = 1).await;
        let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: essentry\r\nX-Slow: ")
            .await
            .unwrap();
        let closed = read_to_close(&mut stream, Duration::from_secs(10)).await;
        let (_, after) = closed.expect("the server closed the idle connection");
        assert!(after < Duration::from_secs(5), "closed after {after:?}");
        // A complete request on a fresh connection is still served.
        let r = reqwest::get(format!("http://{}/healthz", addr(&app))).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        app.finish().await;
    }
}

backend_test! {
    /// A body that never finishes arriving: 408 in the SCIM error schema, and nothing written.
    async fn a_request_that_never_finishes_is_cut_off(backend) {
        let app = TestApp::spawn_with(backend, |s| s.server.request_timeout_secs = 1).await;
        let uid = app.create_user("ann@a.example", "Ann", "Lee").await;
        let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
        let head = format!(
            "PATCH /scim/v2/Users/{uid} HTTP/1.1\r\nHost: essentry\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: 1000\r\n\r\n{{\"schemas\":",
            app.token
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("server.request_timeout_secs"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let u = app.get(&format!("/Users/{uid}")).await;
        assert_eq!(u.body["meta"]["version"], "W/\"1\"");
        app.finish().await;
    }
}

backend_test! {
    /// With `max_connections = 1`, a second connection is not served while the first is open,
    /// and is once it closes.
    async fn connections_beyond_the_limit_wait(backend) {
        let app = TestApp::spawn_with(backend, |s| s.server.max_connections = 1).await;
        let url = format!("http://{}/healthz", addr(&app));
        let fresh = || {
            reqwest::Client::builder()
                .timeout(Duration::from_millis(700))
                .build()
                .unwrap()
        };
        assert_eq!(fresh().get(&url).send().await.unwrap().status(), StatusCode::OK);
        let holder = TcpStream::connect(addr(&app)).await.unwrap();
        // Give the server a moment to accept the holder (it takes the only slot).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let waiting = fresh().get(&url).send().await;
        assert!(waiting.is_err(), "served beyond the limit: {waiting:?}");
        drop(holder);
        let mut served = false;
        for _ in 0..20 {
            if fresh().get(&url).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served, "served once the first connection closed");
        app.finish().await;
    }
}
