//! Executions as resources, with subscriptions — through rmcp's client, on sessions that began with `initialize`
//! (up to 2025-11-25) and on 2026-07-28 ones (per-request capabilities, `subscriptions/listen`).

use rmcp::ClientHandler;
use rmcp::ServiceError;
use rmcp::model::{
    PaginatedRequestParams, ReadResourceRequestParams, ResourceContents, ServerNotification, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::SubscriptionEnd;
use std::path::Path;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use workflow_mcp::engine::ExecutionState;
use workflow_mcp::store::{ExecutionRecord, Store};

use crate::util::{
    Client, Heard, RawServer, Server, TestDir, client, path_arg, protocol_error, records, release_fifo, wf,
};

async fn read<H: ClientHandler>(s: &Server<H>, uri: &str) -> Result<(String, String), rmcp::ErrorData> {
    match s.client.read_resource(ReadResourceRequestParams::new(uri)).await {
        Ok(r) => match r.contents.into_iter().next() {
            Some(ResourceContents::TextResourceContents { text, mime_type, .. }) => {
                Ok((text, mime_type.unwrap_or_default()))
            }
            other => panic!("{uri}: expected one text content, got {other:?}"),
        },
        Err(ServiceError::McpError(e)) => Err(e),
        Err(e) => panic!("resources/read failed below the protocol: {e}"),
    }
}

/// A workflow that prints `first`, waits for fifo `a`, prints `second` and waits for fifo `b`.
fn two_steps(name: &str, a: &Path, b: &Path) -> Value {
    wf(
        name,
        &[
            "out",
            "first",
            "wait-fifo",
            path_arg(a),
            "out",
            "second",
            "wait-fifo",
            path_arg(b),
        ],
    )
}

/// An in-process server running `x` ([`two_steps`] on `fifos`), `other` and `quick` (prints `hi`), whose client
/// records what it hears; `x` is started and has printed its first line.
async fn x_at_first(
    label: &str,
    other: Value,
    fifos: (&Path, &Path),
) -> (Server<Client>, mpsc::UnboundedReceiver<Heard>, String) {
    let (client, heard) = client(false);
    let config = json!({"workflows": [two_steps("x", fifos.0, fifos.1), other, wf("quick", &["out", "hi"])]});
    let s = Server::builder(label, config).handler(client).start().await;
    let x = s.start_wf("x", json!({})).await;
    s.wait_line(&x, "first").await;
    (s, heard, x)
}

/// Waits for the next notification about `uri`, leaving list changes aside.
async fn next_update(heard: &mut mpsc::UnboundedReceiver<Heard>, uri: &str) {
    loop {
        match heard.recv().await.expect("the client is still connected") {
            Heard::Updated(u) if u == uri => return,
            Heard::Updated(u) => panic!("an update for {u}, which is not subscribed"),
            Heard::ListChanged => {}
        }
    }
}

#[tokio::test]
async fn executions_are_resources_listed_newest_first_and_read_as_get_status_and_get_logs_give_them() {
    let dir = TestDir::new("resources");
    let fifo = dir.fifo("go");
    let s = Server::start(
        "resources",
        json!({"workflows": [
            // One stream: across stdout and stderr, lines keep the order they were read in.
            wf("chatty", &["wide", "3000", "99", "78", "out", "the last line"]),
            wf("hold", &["out", "holding", "wait-fifo", path_arg(&fifo)]),
        ]}),
    )
    .await;
    let chatty = s.start_wf("chatty", json!({})).await;
    s.wait_final(&chatty).await;
    let hold = s.start_wf("hold", json!({})).await;
    s.wait_line(&hold, "holding").await;

    let listed = s.client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "workflow://workflows".to_owned(),
            format!("workflow://executions/{hold}"),
            format!("workflow://executions/{hold}/logs"),
            format!("workflow://executions/{chatty}"),
            format!("workflow://executions/{chatty}/logs"),
        ],
        "the catalog, then executions newest first"
    );
    let title = listed[1].title.as_deref().unwrap();
    assert!(
        title.starts_with("hold: running, started 20") && title.ends_with(" UTC"),
        "workflow, state, start time: {title}"
    );
    assert!(
        listed[3]
            .title
            .as_deref()
            .unwrap()
            .starts_with("chatty: succeeded, started ")
    );
    assert!(
        listed[4]
            .title
            .as_deref()
            .unwrap()
            .starts_with("chatty output: 3001 lines, started "),
        "{:?}",
        listed[4].title
    );
    assert_eq!(listed[1].mime_type.as_deref(), Some("application/json"));
    assert_eq!(listed[2].mime_type.as_deref(), Some("text/plain"));

    let (status, mime) = read(&s, &format!("workflow://executions/{chatty}")).await.unwrap();
    assert_eq!(mime, "application/json");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status, s.ok("get_status", json!({"execution_id": chatty})).await);

    let (logs, mime) = read(&s, &format!("workflow://executions/{chatty}/logs")).await.unwrap();
    assert_eq!(mime, "text/plain");
    assert!(logs.len() < 50_000, "within the result budget: {}", logs.len());
    let first = logs.lines().next().unwrap();
    assert!(first.starts_with("# lines 0-") && first.contains("get_logs"), "{first}");
    let lines = records(&json!(logs));
    assert_eq!(lines.last().unwrap()["text"], "the last line", "the newest lines");
    let n = lines.len();
    let newest = s
        .ok(
            "get_logs",
            json!({"execution_id": chatty, "tail": n, "max_lines": n, "max_bytes": 1048576}),
        )
        .await;
    assert_eq!(records(&newest["lines"]), lines, "the same records get_logs gives");

    let (catalog, _) = read(&s, "workflow://workflows").await.unwrap();
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    assert_eq!(catalog, s.ok("list_workflows", json!({})).await);

    let templates = s.client.list_all_resource_templates().await.unwrap();
    let templates: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(
        templates,
        [
            "workflow://executions/{execution_id}",
            "workflow://executions/{execution_id}/logs"
        ]
    );

    let unknown = Uuid::new_v4();
    let e = read(&s, &format!("workflow://executions/{unknown}")).await.unwrap_err();
    assert!(e.message.contains(&format!("no execution {unknown}")), "{}", e.message);
    let e = read(&s, "workflow://nothing").await.unwrap_err();
    assert!(
        e.message.contains("workflow://executions/{execution_id}"),
        "{}",
        e.message
    );
    release_fifo(&fifo);
}

#[tokio::test]
async fn the_list_of_resources_comes_in_pages_without_repeats() {
    let s = Server::start("resource-pages", json!({"workflows": [wf("w", &["out", "x"])]})).await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(s.start_wf("w", json!({})).await);
    }
    let first = s.client.list_resources(None).await.unwrap();
    assert_eq!(first.resources.len(), 101, "the catalog and 50 executions");
    assert!(first.next_cursor.is_some());
    // An execution started between two pages does not shift the next one.
    s.start_wf("w", json!({})).await;
    let all = s.client.list_all_resources().await.unwrap();
    let mut seen: Vec<&str> = all.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(seen.len(), 1 + 2 * 61);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 1 + 2 * 61, "no resource twice");
    for id in ids {
        assert!(seen.contains(&format!("workflow://executions/{id}").as_str()));
    }
}

/// A finished record of workflow `w` created at `created_at` (ms), as the engine would have written it.
fn finished_record(owner: &str, created_at: i64) -> ExecutionRecord {
    ExecutionRecord {
        state: ExecutionState::Succeeded,
        exit_code: Some(0),
        started_at: Some(created_at + 1),
        finished_at: Some(created_at + 2),
        ..ExecutionRecord::queued(Uuid::new_v4(), "w", vec!["true".into()], owner, created_at)
    }
}

#[tokio::test]
async fn every_execution_is_listed_once_newest_first_over_many_pages() {
    // 250 stored executions (five pages), some created in the same millisecond (their order is the order they
    // were written), and one live execution created after them.
    let dir = TestDir::new("resource-many-pages");
    let state_dir = dir.join("state");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut stored = Vec::new();
    {
        let (store, _) = Store::open(&state_dir).unwrap();
        let owner = store.instance().to_string();
        for i in 0..250_i64 {
            let rec = finished_record(&owner, now - 10_000 + i / 3);
            store.insert(&rec).unwrap();
            stored.push(rec.id.to_string());
        }
        store.flush();
        store.retire();
    }
    let s = Server::builder("resource-many-pages", json!({"workflows": [wf("w", &["out", "x"])]}))
        .state_dir(&state_dir)
        .start()
        .await;
    let live = s.start_wf("w", json!({})).await;
    let mut expected = vec!["workflow://workflows".to_owned()];
    for id in std::iter::once(&live).chain(stored.iter().rev()) {
        expected.push(format!("workflow://executions/{id}"));
        expected.push(format!("workflow://executions/{id}/logs"));
    }
    let mut listed = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s
            .client
            .list_resources(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .unwrap();
        pages += 1;
        listed.extend(page.resources.into_iter().map(|r| r.uri.clone()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, 6, "251 executions at 50 a page");
    assert_eq!(listed, expected, "each execution once, newest first");

    let e = s
        .client
        .list_resources(Some(
            PaginatedRequestParams::default().with_cursor(Some("not-a-cursor".into())),
        ))
        .await
        .unwrap_err();
    assert!(format!("{e}").contains("is not one resources/list gave"), "{e}");
}

#[tokio::test]
#[expect(
    deprecated,
    reason = "resources/subscribe is how sessions up to 2025-11-25 subscribe, which is what stdio clients speak"
)]
async fn a_subscriber_hears_of_new_output_state_and_new_executions_and_nothing_once_unsubscribed() {
    let dir = TestDir::new("subscribe");
    let (a, b, c, d) = (dir.fifo("a"), dir.fifo("b"), dir.fifo("c"), dir.fifo("d"));
    let (s, mut heard, x) = x_at_first(
        "subscribe",
        wf(
            "y",
            &[
                "out",
                "ready",
                "wait-fifo",
                path_arg(&c),
                "out",
                "more",
                "wait-fifo",
                path_arg(&d),
            ],
        ),
        (&a, &b),
    )
    .await;
    let x_uri = format!("workflow://executions/{x}");
    let x_logs = format!("{x_uri}/logs");
    s.client.subscribe(SubscribeRequestParams::new(&x_logs)).await.unwrap();

    release_fifo(&a);
    next_update(&mut heard, &x_logs).await;
    let (logs, _) = read(&s, &x_logs).await.unwrap();
    assert!(
        logs.ends_with("1 second\n"),
        "an update means the resource has changed: {logs}"
    );

    // A subscriber also hears when executions are added to the list.
    s.start_wf("quick", json!({})).await;
    loop {
        match heard.recv().await.unwrap() {
            Heard::ListChanged => break,
            Heard::Updated(u) => assert_eq!(u, x_logs),
        }
    }

    let e = protocol_error(
        s.client
            .subscribe(SubscribeRequestParams::new(format!(
                "workflow://executions/{}",
                Uuid::new_v4()
            )))
            .await,
    );
    assert!(e.message.contains("no execution"), "{}", e.message);

    s.client
        .unsubscribe(UnsubscribeRequestParams::new(&x_logs))
        .await
        .unwrap();
    let y = s.start_wf("y", json!({})).await;
    s.wait_line(&y, "ready").await;
    let y_uri = format!("workflow://executions/{y}");
    s.client.subscribe(SubscribeRequestParams::new(&y_uri)).await.unwrap();
    // x ends, then y changes twice. y's second update comes at least UPDATE_EVERY after its first, by when any
    // update for x (held back at most that long) would have come: one session, one ordered stream.
    release_fifo(&b);
    assert_eq!(s.wait_final(&x).await["state"], "succeeded");
    let mut after = Vec::new();
    for (fifo, until) in [(&c, "running"), (&d, "succeeded")] {
        release_fifo(fifo);
        loop {
            match heard.recv().await.unwrap() {
                Heard::Updated(u) if u == y_uri => {
                    let (status, _) = read(&s, &y_uri).await.unwrap();
                    let status: Value = serde_json::from_str(&status).unwrap();
                    if status["state"] == until && status["output"]["last_seq"] == 1 {
                        break;
                    }
                }
                other => after.push(other),
            }
        }
    }
    assert!(
        !after.contains(&Heard::Updated(x_logs.clone())),
        "nothing about {x_logs} once unsubscribed: {after:?}"
    );
}

/// Up to `n` different spellings of execution `id`'s status URI that all parse to it: the id's letters in
/// every mix of cases, hyphenated, simple (no hyphens), braced and as a `urn:uuid:`. The first is the canonical one.
fn spellings(id: &str, n: usize) -> Vec<String> {
    let letters: Vec<usize> = id
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphabetic())
        .map(|(i, _)| i)
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for k in 0..(4usize << letters.len().min(16)) {
        let (form, mask) = (k % 4, k / 4);
        let mut cased: Vec<char> = id.chars().collect();
        for (bit, &i) in letters.iter().enumerate() {
            if mask >> bit & 1 == 1 {
                cased[i] = cased[i].to_ascii_uppercase();
            }
        }
        let cased: String = cased.into_iter().collect();
        let spelled = match form {
            0 => cased,
            1 => cased.replace('-', ""),
            2 => format!("{{{cased}}}"),
            _ => format!("urn:uuid:{cased}"),
        };
        let uri = format!("workflow://executions/{spelled}");
        if seen.insert(uri.clone()) {
            out.push(uri);
        }
        if out.len() == n {
            break;
        }
    }
    out
}

#[tokio::test]
#[expect(
    deprecated,
    reason = "resources/subscribe is how sessions up to 2025-11-25 subscribe, which is what stdio clients speak"
)]
async fn subscribing_to_one_execution_however_spelled_is_one_subscription_and_a_session_has_a_cap() {
    let dir = TestDir::new("subscribe-many");
    let (a, b) = (dir.fifo("a"), dir.fifo("b"));
    let (s, mut heard, x) = x_at_first("subscribe-many", wf("y", &["out", "unused"]), (&a, &b)).await;
    let uris = spellings(&x, 2000);
    assert!(uris.len() >= 100, "{} spellings", uris.len());
    for uri in &uris {
        s.client.subscribe(SubscribeRequestParams::new(uri)).await.unwrap();
    }
    // One subscription: each change is told once, under the URI it was first asked for.
    let mut updates = Vec::new();
    for (fifo, until) in [(&a, "running"), (&b, "succeeded")] {
        release_fifo(fifo);
        loop {
            match heard.recv().await.unwrap() {
                Heard::Updated(u) if u == uris[0] => {
                    updates.push(u);
                    let status: Value = serde_json::from_str(&read(&s, &uris[0]).await.unwrap().0).unwrap();
                    if status["state"] == until && status["output"]["last_seq"] == 1 {
                        break;
                    }
                }
                Heard::Updated(u) => panic!("an update for {u}: the execution is watched more than once"),
                Heard::ListChanged => {}
            }
        }
    }
    assert!(updates.len() <= 4, "{updates:?}");

    // A session watches at most 1000 resources: x's status, then 999 others (x's logs, 500 executions' two).
    let mut others = vec![format!("{}/logs", uris[0])];
    for _ in 0..500 {
        let id = s.start_wf("quick", json!({})).await;
        others.push(format!("workflow://executions/{id}"));
        others.push(format!("workflow://executions/{id}/logs"));
    }
    for uri in &others[..999] {
        s.client.subscribe(SubscribeRequestParams::new(uri)).await.unwrap();
    }
    let e = protocol_error(s.client.subscribe(SubscribeRequestParams::new(&others[999])).await);
    assert!(
        e.message.contains("1000") && e.message.contains("unsubscribe"),
        "over the cap, a clear error: {}",
        e.message
    );
    // Asking again for one already watched is no new subscription, even when full.
    s.client.subscribe(SubscribeRequestParams::new(&uris[1])).await.unwrap();
    // Unsubscribing under another spelling frees its place.
    s.client
        .unsubscribe(UnsubscribeRequestParams::new(uris.last().unwrap()))
        .await
        .unwrap();
    s.client
        .subscribe(SubscribeRequestParams::new(&others[999]))
        .await
        .unwrap();
}

#[tokio::test]
#[expect(
    deprecated,
    reason = "resources/subscribe is how sessions up to 2025-11-25 subscribe, which is what stdio clients speak"
)]
async fn a_subscriber_hears_of_what_another_server_runs_once_per_change() {
    let dir = TestDir::new("subscribe-other");
    let (a, b) = (dir.fifo("a"), dir.fifo("b"));
    let state = dir.join("state");
    let config = json!({"workflows": [
        two_steps("x", &a, &b),
    ]});
    let runner = Server::builder("subscribe-runner", config.clone())
        .state_dir(&state)
        .spawn()
        .await;
    let x = runner.start_wf("x", json!({})).await;
    runner.wait_line(&x, "first").await;
    let (client, mut heard) = client(false);
    let watcher = Server::builder("subscribe-watcher", config)
        .state_dir(&state)
        .handler(client)
        .spawn()
        .await;
    let uris = spellings(&x, 50);
    let logs = format!("{}/logs", uris[0]);
    for uri in uris.iter().chain([&logs]) {
        watcher
            .client
            .subscribe(SubscribeRequestParams::new(uri))
            .await
            .unwrap();
    }
    for (fifo, until) in [(&a, "running"), (&b, "succeeded")] {
        release_fifo(fifo);
        loop {
            match heard.recv().await.unwrap() {
                Heard::Updated(u) if u == uris[0] => {
                    let status: Value = serde_json::from_str(&read(&watcher, &uris[0]).await.unwrap().0).unwrap();
                    if status["state"] == until && status["output"]["last_seq"] == 1 {
                        break;
                    }
                }
                Heard::Updated(u) => assert_eq!(u, logs, "only what was subscribed, once"),
                Heard::ListChanged => {}
            }
        }
    }
    // Heard through their files, not a look on a timer.
    let log = watcher.stderr();
    assert!(
        log.contains("a file change woke the watcher of executions other processes run"),
        "{log}"
    );
}

#[tokio::test]
async fn a_client_that_never_subscribes_hears_nothing() {
    let mut s = RawServer::start("quiet", json!({"workflows": [wf("w", &["out", "x"])]})).await;
    let calls = [
        ("execute_workflow", json!({"workflow": "w", "wait_ms": 50000})),
        ("execute_workflow", json!({"workflow": "w", "wait_ms": 50000})),
        ("list_executions", json!({})),
    ];
    for (tool, args) in calls {
        let id = s.call(tool, args).await;
        // The next message is the answer: no notification comes before it.
        let msg = s.recv().await.expect("an answer");
        assert_eq!(msg["id"], id, "an unasked-for message: {msg}");
    }
}

#[tokio::test]
async fn subscriptions_listen_streams_updates_and_list_changes_until_cancelled() {
    let dir = TestDir::new("listen");
    let fifo = dir.fifo("go");
    let (c, _) = client(false);
    let s = Server::builder(
        "listen",
        json!({"workflows": [
            wf("x", &["out", "first", "wait-fifo", path_arg(&fifo), "out", "second"]),
            wf("quick", &["out", "hi"]),
        ]}),
    )
    .handler(c)
    .protocol_2026()
    .start()
    .await;
    let x = s.start_wf("x", json!({})).await;
    s.wait_line(&x, "first").await;
    let x_uri = format!("workflow://executions/{x}");
    let stranger = format!("workflow://executions/{}", Uuid::new_v4());
    let filter = SubscriptionFilter::builder()
        .resources_list_changed()
        .resource_subscriptions([x_uri.clone(), stranger])
        .build();
    let mut sub = s
        .client
        .listen(filter)
        .await
        .expect("subscriptions/listen is acknowledged");
    assert_eq!(
        sub.acknowledged().resource_subscriptions,
        Some(vec![x_uri.clone()]),
        "only resources that exist are accepted"
    );
    assert_eq!(sub.acknowledged().resources_list_changed, Some(true));

    release_fifo(&fifo);
    let mut updates = 0;
    loop {
        match sub.next().await.unwrap().expect("the stream is open") {
            ServerNotification::ResourceUpdatedNotification(n) => {
                assert_eq!(n.params.uri, x_uri);
                updates += 1;
                let (status, _) = read(&s, &x_uri).await.unwrap();
                if serde_json::from_str::<Value>(&status).unwrap()["state"] == "succeeded" {
                    break;
                }
            }
            ServerNotification::ResourceListChangedNotification(_) => {}
            other => panic!("not asked for: {other:?}"),
        }
    }
    assert!(updates >= 1);
    s.start_wf("quick", json!({})).await;
    loop {
        if let ServerNotification::ResourceListChangedNotification(_) =
            sub.next().await.unwrap().expect("the stream is open")
        {
            break;
        }
    }
    sub.cancel().await.unwrap();
    assert!(matches!(sub.end(), Some(SubscriptionEnd::Cancelled)));
    assert!(sub.next().await.unwrap().is_none(), "nothing after the end");
    // The session goes on.
    s.ok("list_executions", json!({})).await;
}

#[tokio::test]
async fn an_open_subscription_ends_gracefully_at_end_of_input() {
    let mut s = RawServer::builder("listen-eof", json!({"workflows": [wf("w", &["out", "x"])]})).bare();
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    s.send(json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
        "params": {"notifications": {"resourcesListChanged": true}, "_meta": meta}}))
        .await;
    let ack = s.recv().await.expect("an acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    s.close_stdin();
    let end = match s.recv().await {
        Some(end) => end,
        None => panic!("no final result for the stream:\n{}", s.stderr()),
    };
    assert_eq!(
        end["id"], 1,
        "the listen request is answered when the session ends: {end}"
    );
    assert!(end.get("result").is_some(), "{end}");
    s.wait_exit().await;
    assert!(
        !s.stderr().contains("gave up waiting"),
        "the end of input did not wait for the stream:\n{}",
        s.stderr()
    );
}
