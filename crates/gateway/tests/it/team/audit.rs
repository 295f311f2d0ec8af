//! The audit trail on the team store: instances appending at once keep one chain (the append's advisory lock,
//! store/audit.rs), which verifies whole until a row is edited in the database.

use serde_json::json;

use super::{ADMIN, http, instance_with, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_append_to_one_chain_and_a_tampered_row_is_found() {
    let (fake, _creds, db) = seed(fake_codex::FakeConfig::default(), 0).await;
    let (a, b) = (instance_with(&fake, &db, "").await, instance_with(&fake, &db, "").await);
    let http = http();
    // Key creations on both instances at once: every append reads the last row and writes the next.
    let calls = (0..12).map(|i| {
        let at = if i % 2 == 0 { &a } else { &b };
        let req = http.post(at.url("/admin/keys")).bearer_auth(ADMIN).json(&json!({"name": format!("k{i}")}));
        async move { req.send().await.map(|r| r.status().as_u16()) }
    });
    for status in futures_util::future::join_all(calls).await {
        assert_eq!(status.ok(), Some(201));
    }
    let scratch = std::env::temp_dir().join(format!("cgw-team-audit-{}", uuid::Uuid::new_v4().simple()));
    let store = codex_gateway::store::Store::open_with(&scratch.join("gateway.db"), Some(&db))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let rows = store.audit_rows(&Default::default()).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(rows.iter().filter(|r| r.action == "key.create" && r.actor == "admin-key").count(), 12);
    let whole = codex_gateway::audit::verify::verify(&rows).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(whole.rows, rows.len());
    // B reads the trail A wrote too.
    let v: serde_json::Value = http
        .get(b.url("/admin/audit?action=key.create&limit=100"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(v["count"], 12, "{v}");

    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap_or_else(|e| panic!("{e}"));
    let conn = tokio::spawn(conn);
    client
        .execute("UPDATE audit_log SET details = '{\"name\":\"other\"}' WHERE id = 5", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(client);
    let _ = conn.await;
    let rows = store.audit_rows(&Default::default()).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(codex_gateway::audit::verify::verify(&rows), Err(codex_gateway::audit::verify::Broken::Hash { id: 5 }));
    drop(store);
    let _ = std::fs::remove_dir_all(&scratch);
}
