//! A real HTTP server on loopback for a service under test, and a client for it.

/// What axum can serve: a request-to-response service, cloned per connection.
pub trait Servable:
    tower_service::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Servable for S where
    S: tower_service::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// Serves `service` on a loopback port; its base URL.
pub async fn serve(service: impl Servable) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service(service))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

/// A client that keeps one connection alive across requests, and the status and body of a call.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub async fn new(service: impl Servable) -> Self {
        let base = serve(service).await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        Self { http, base }
    }

    pub async fn call(&self, request: reqwest::RequestBuilder) -> (u16, String) {
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// `method` on `path` with `headers`: the status and the body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.call(request).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        self.send(reqwest::Method::GET, path, headers).await
    }

    pub async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        self.send(reqwest::Method::DELETE, path, headers).await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        self.send(reqwest::Method::POST, path, headers).await
    }
}
