//! What the Redis integration tests share.

/// The Redis the test suite started (`ops/test`, `ops/dev-services`): in CI
/// a missing one is a failure, by hand the test is skipped.
pub fn redis_url() -> Option<String> {
    match std::env::var("DOCKET_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("DOCKET_TEST_REDIS_URL is not set: run the suite with ops/test")
        }
        Err(_) => {
            eprintln!(
                "skipped: DOCKET_TEST_REDIS_URL is not set (start Redis with ops/dev-services)"
            );
            None
        }
    }
}

/// Deletes a test's keys (those under `prefix`) when dropped, whether the
/// test passed or not; never a key it did not create.
pub struct OwnKeys {
    url: String,
    prefix: String,
}

impl OwnKeys {
    pub fn new(url: &str, prefix: &str) -> OwnKeys {
        OwnKeys {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for OwnKeys {
    fn drop(&mut self) {
        let Ok(mut conn) =
            redis::Client::open(self.url.as_str()).and_then(|client| client.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}
