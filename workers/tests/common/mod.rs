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
