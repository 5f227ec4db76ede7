//! Conformance: server-wide settings (`get_meta`, `put_meta`).

use crate::backends;

#[tokio::test]
async fn meta_get_put_overwrite() {
    for b in backends().await {
        let s = b.start("meta_get_put_overwrite");
        assert_eq!(s.get_meta("server_id").await.unwrap(), None);

        s.put_meta("server_id", "srv-1").await.unwrap();
        s.put_meta("ca_fingerprint", "").await.unwrap();
        assert_eq!(s.get_meta("server_id").await.unwrap().as_deref(), Some("srv-1"));
        assert_eq!(s.get_meta("ca_fingerprint").await.unwrap().as_deref(), Some(""));

        s.put_meta("server_id", "srv-2").await.unwrap();
        assert_eq!(s.get_meta("server_id").await.unwrap().as_deref(), Some("srv-2"));
        // Overwriting one key leaves the others alone.
        assert_eq!(s.get_meta("ca_fingerprint").await.unwrap().as_deref(), Some(""));
        assert_eq!(s.get_meta("Server_ID").await.unwrap(), None, "keys are case-sensitive");
    }
}
