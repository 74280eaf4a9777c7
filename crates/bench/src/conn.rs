//! gRPC connections to the endpoints, and the per-client stubs on top of them.
//!
//! Mirrors etcd's `benchmark` tool: `--conns` HTTP/2 connections are opened
//! (spread round-robin over the endpoints) and `--clients` concurrent clients
//! share them round-robin, so many clients multiplex over few connections as
//! they do in a real Go client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bramble_api::etcdserverpb::{
    auth_client::AuthClient, kv_client::KvClient, maintenance_client::MaintenanceClient,
    AuthenticateRequest, StatusRequest,
};
use bramble_tls::{ClientTls, Connector, DialSettings};
use serde::Serialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// Largest response a client accepts: etcd allows ranges far past tonic's
/// 4 MiB default, and a range benchmark must not fail on its own limit.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Turns `host:port`, `http://host:port` or `https://host:port` into a URI
/// tonic can dial.
pub(crate) fn endpoint_uri(endpoint: &str) -> Result<String> {
    let e = endpoint.trim();
    if e.is_empty() {
        bail!("empty endpoint");
    }
    if e.starts_with("http://") || e.starts_with("https://") {
        Ok(e.to_string())
    } else if e.contains("://") {
        bail!("endpoint {e}: only http://, https:// (or host:port) are supported")
    } else {
        Ok(format!("http://{e}"))
    }
}

/// The TLS for https endpoints (`--cacert`, `--cert`/`--cert-key`); none
/// without a CA.
pub(crate) fn tls(
    cacert: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
) -> Result<Option<Arc<ClientTls>>> {
    let Some(ca) = cacert else {
        if identity.is_some() {
            bail!("--cert and --cert-key need --cacert");
        }
        return Ok(None);
    };
    let tls = ClientTls::dial(DialSettings {
        identity,
        trusted_ca_file: Some(ca),
        skip_verify: false,
        protocol: Default::default(),
    })?;
    Ok(Some(tls))
}

/// Opens `conns` connections, connection `i` to endpoint `i % endpoints.len()`.
///
/// Connects eagerly (not lazily on the first request) so TCP and HTTP/2
/// setup are not counted in the first requests' latencies, and so a wrong
/// port fails here with a clear error instead of as `total` request errors.
pub(crate) async fn dial(
    endpoints: &[String],
    conns: usize,
    timeout: Duration,
    tls: Option<Arc<ClientTls>>,
) -> Result<Vec<Channel>> {
    let connector = Connector::new(tls);
    if endpoints.is_empty() {
        bail!("no endpoints");
    }
    let mut channels = Vec::with_capacity(conns);
    for i in 0..conns {
        let uri = endpoint_uri(&endpoints[i % endpoints.len()])?;
        let ep = Endpoint::from_shared(uri.clone())
            .with_context(|| format!("bad endpoint {uri}"))?
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        let ch = tokio::time::timeout(timeout, ep.connect_with_connector(connector.clone()))
            .await
            .with_context(|| format!("connecting to {uri}: timed out after {timeout:?}"))?
            .with_context(|| format!("connecting to {uri}"))?;
        channels.push(ch);
    }
    Ok(channels)
}

/// The auth token every request carries (etcd's `token` metadata), if the run
/// authenticated (`--user`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Token(Option<MetadataValue<Ascii>>);

impl Interceptor for Token {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// A KV stub whose requests carry the run's token.
pub(crate) type Kv = KvClient<InterceptedService<Channel, Token>>;

/// A KV stub on `channel` carrying `token`.
pub(crate) fn kv(channel: Channel, token: Token) -> Kv {
    KvClient::with_interceptor(channel, token).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// One KV stub per client, client `i` on connection `i % channels.len()`.
pub(crate) fn kv_clients(channels: &[Channel], clients: usize, token: &Token) -> Vec<Kv> {
    (0..clients)
        .map(|i| kv(channels[i % channels.len()].clone(), token.clone()))
        .collect()
}

/// Authenticates `user` (`name:password`, as etcdctl's `--user`) on `channel`: the
/// token the run's requests carry. Nothing to do without a user.
pub(crate) async fn authenticate(
    channel: Channel,
    user: Option<&str>,
    timeout: Duration,
) -> Result<Token> {
    let Some(user) = user else {
        return Ok(Token::default());
    };
    let Some((name, password)) = user.split_once(':') else {
        bail!("--user must be name:password");
    };
    let request = AuthenticateRequest {
        name: name.to_string(),
        password: password.to_string(),
    };
    let reply = tokio::time::timeout(timeout, AuthClient::new(channel).authenticate(request))
        .await
        .context("Authenticate: timed out")?
        .context("Authenticate")?
        .into_inner();
    let token = MetadataValue::try_from(reply.token.as_str())
        .map_err(|e| anyhow::anyhow!("the server's token is not valid metadata: {e}"))?;
    Ok(Token(Some(token)))
}

/// What `Maintenance.Status` says about one endpoint.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ServerStatus {
    /// The endpoint asked.
    pub(crate) endpoint: String,
    /// Server version string (etcd's, or the etcd version Bramble reports).
    pub(crate) version: String,
    /// Backend database size in bytes.
    pub(crate) db_size: i64,
    /// Current store revision.
    pub(crate) revision: i64,
}

/// Asks `endpoint` (over `channel`) for its status; used before and after a
/// run for the server version and how much the database file grew.
pub(crate) async fn status(
    endpoint: &str,
    channel: Channel,
    token: &Token,
    timeout: Duration,
) -> Result<ServerStatus> {
    let mut m = MaintenanceClient::with_interceptor(channel, token.clone());
    let resp = tokio::time::timeout(timeout, m.status(StatusRequest {}))
        .await
        .with_context(|| format!("Status on {endpoint}: timed out"))?
        .with_context(|| format!("Status on {endpoint}"))?
        .into_inner();
    Ok(ServerStatus {
        endpoint: endpoint.to_string(),
        version: resp.version,
        db_size: resp.db_size,
        revision: resp.header.map(|h| h.revision).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            endpoint_uri("127.0.0.1:2379").expect("ok"),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_uri(" http://[::1]:2379 ").expect("ok"),
            "http://[::1]:2379"
        );
        assert_eq!(
            endpoint_uri("https://127.0.0.1:2379").expect("ok"),
            "https://127.0.0.1:2379"
        );
        assert!(endpoint_uri("unix:///tmp/etcd.sock").is_err());
        assert!(endpoint_uri("").is_err());
    }
}
