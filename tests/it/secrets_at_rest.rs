//! Only SHA-256 hashes of device codes and tokens reach the database file.

use crate::support::TestApp;

fn database_bytes(app: &TestApp) -> Vec<u8> {
    if crate::support::on_postgres() {
        // Every row of every table as PostgreSQL prints it (a row cast to text).
        let db = app.db();
        let tables = db.query_strings(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        );
        assert!(tables.len() > 5, "{tables:?}");
        return tables
            .iter()
            .flat_map(|t| {
                db.query_strings(&format!(
                    "SELECT COALESCE(string_agg(r::text, ' '), '') FROM \"{t}\" r"
                ))
            })
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes();
    }
    // The main file and its WAL: a secret written anywhere on disk counts.
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", app.db_path.display());
        if let Ok(bytes) = std::fs::read(path) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn database_holds_no_secret_in_plain_text() {
    let app = TestApp::spawn();
    let user = app.add_user("dora");
    let codes = app.device_authorize("guest");
    app.approve(&codes.user_code, user);
    let tokens = app.poll("guest", &codes.device_code).json();
    let secrets = [
        codes.device_code.clone(),
        tokens["access_token"].as_str().unwrap().to_string(),
        tokens["refresh_token"].as_str().unwrap().to_string(),
    ];
    let bytes = database_bytes(&app);
    // The check can see data: the user code and hashes are there.
    assert!(contains(&bytes, &codes.user_code.replace('-', "")));
    assert!(contains(
        &bytes,
        &devicegate::secrets::hash_secret(&secrets[0])
    ));
    for secret in &secrets {
        assert!(
            !contains(&bytes, secret),
            "found a secret in the database file"
        );
    }
}

#[cfg(unix)]
#[test]
fn database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    // A SQLite file's mode; PostgreSQL's files are its server's.
    if crate::support::on_postgres() {
        return;
    }
    let app = TestApp::spawn();
    let mode = std::fs::metadata(&app.db_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
