//! Reading a JSON answer in one step, for tests that talk to a role over HTTP.

use std::future::Future;

use serde::de::DeserializeOwned;

/// Sends a request and reads its JSON body, whatever the status: tests that care about the
/// status call `send` and look at it first.
pub trait SendJson {
    /// Sends the request and parses the body as `T`; panics if either fails.
    fn send_json<T: DeserializeOwned>(self) -> impl Future<Output = T>;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json<T: DeserializeOwned>(self) -> T {
        self.send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("a JSON body")
    }
}
