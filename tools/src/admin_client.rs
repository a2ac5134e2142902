//! A small synchronous Kafka client for the admin commands: one connection to the
//! bootstrap broker, one request at a time, decoded with the same protocol crate the broker
//! uses, so every error code and message the broker sends reaches the user.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// The largest response accepted.
const RESPONSE_BYTES_MAX: usize = 256 << 20;

pub struct AdminClient {
    stream: TcpStream,
    bootstrap: String,
    correlation_id: i32,
}

impl AdminClient {
    pub fn connect(bootstrap: &str) -> anyhow::Result<AdminClient> {
        let stream = TcpStream::connect(bootstrap)
            .with_context(|| format!("connecting to the broker at {bootstrap}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        Ok(AdminClient {
            stream,
            bootstrap: bootstrap.to_string(),
            correlation_id: 0,
        })
    }

    /// Sends `request` at `version` and returns the decoded response.
    pub fn call<R: Request + Encodable>(
        &mut self,
        request: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("strand-cli")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        request.encode(&mut body, version)?;
        let len = u32::try_from(body.len()).context("request too large")?;
        self.stream.write_all(&len.to_be_bytes())?;
        self.stream.write_all(&body)?;
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .with_context(|| format!("the broker at {} closed the connection", self.bootstrap))?;
        let len = usize::try_from(u32::from_be_bytes(prefix))?;
        if len > RESPONSE_BYTES_MAX {
            bail!("response of {len} bytes exceeds {RESPONSE_BYTES_MAX}");
        }
        let mut response = vec![0; len];
        self.stream.read_exact(&mut response)?;
        let mut response = bytes::Bytes::from(response);
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version))?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "response to request {}, expected {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        R::Response::decode(&mut response, version)
    }
}

/// `None` for no error, else Kafka's name for the code and the broker's message.
pub fn error_text(code: i16, message: Option<&StrBytes>) -> Option<String> {
    if code == 0 {
        return None;
    }
    let name = kafka_protocol::error::ParseResponseErrorCode::err(code)
        .map_or_else(|| format!("error {code}"), |error| format!("{error:?}"));
    Some(match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("{name}: {message}"),
        None => name,
    })
}
