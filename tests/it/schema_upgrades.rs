//! Databases written by older versions open and are brought forward, nothing lost.

use devicegate::store::Store;

fn columns(conn: &rusqlite::Connection, table: &str) -> Vec<String> {
    conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_version_2_database_gains_openid_connect_columns_and_a_subject_for_every_user() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v2.db");
    {
        let store = Store::open(&db).unwrap();
        store.create_user("alice", "x", 1).unwrap();
        store.create_user("bob", "x", 1).unwrap();
    }
    {
        // Make it what version 2 wrote: none of version 3's columns.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DROP INDEX users_by_subject; \
             ALTER TABLE users DROP COLUMN subject; \
             ALTER TABLE users DROP COLUMN display_name; \
             ALTER TABLE users DROP COLUMN email; \
             ALTER TABLE users DROP COLUMN email_verified; \
             ALTER TABLE clients DROP COLUMN access_token_format; \
             ALTER TABLE clients DROP COLUMN access_token_audience; \
             ALTER TABLE clients DROP COLUMN id_token_signed_response_alg; \
             ALTER TABLE clients DROP COLUMN refresh_requires_offline_access; \
             ALTER TABLE device_codes DROP COLUMN auth_time; \
             ALTER TABLE grants DROP COLUMN auth_time; \
             PRAGMA user_version = 2;",
        )
        .unwrap();
        assert!(!columns(&conn, "users").contains(&"subject".to_string()));
    }
    drop(Store::open(&db).unwrap());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    for (table, column) in [
        ("users", "subject"),
        ("users", "display_name"),
        ("users", "email"),
        ("users", "email_verified"),
        ("clients", "access_token_format"),
        ("clients", "access_token_audience"),
        ("clients", "id_token_signed_response_alg"),
        ("clients", "refresh_requires_offline_access"),
        ("device_codes", "auth_time"),
        ("grants", "auth_time"),
    ] {
        assert!(
            columns(&conn, table).contains(&column.to_string()),
            "{table}.{column}"
        );
    }
    let subjects: Vec<String> = conn
        .prepare("SELECT subject FROM users ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(subjects.len(), 2);
    assert_ne!(subjects[0], subjects[1]);
    for subject in &subjects {
        assert_eq!(subject.len(), 26, "{subject}");
        assert!(!subject.contains("alice") && !subject.contains("bob"));
    }
    // The built-in client keeps opaque tokens and RS256 ID tokens.
    let (format, alg): (String, String) = conn
        .query_row(
            "SELECT access_token_format, id_token_signed_response_alg FROM clients \
             WHERE client_id = 'guest'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or(("opaque".into(), "RS256".into()));
    assert_eq!((format.as_str(), alg.as_str()), ("opaque", "RS256"));
    // Subjects stay unique.
    assert!(conn
        .execute(
            "UPDATE users SET subject = ?1 WHERE username = 'bob'",
            [&subjects[0]]
        )
        .is_err());
}
