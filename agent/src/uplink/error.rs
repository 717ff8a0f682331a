//! Why the uplink could not reach, or lost, the SOC: the raw failure that
//! [`super::diagnose`] turns into a reason and a fix for the operator.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("TLS setup: {0}")]
    Tls(#[from] owlet_tls::TlsError),
    #[error("soc.server_name {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    #[error("cannot resolve the SOC address {0}: {1}")]
    Dns(String, std::io::Error),
    #[error("cannot connect to the SOC at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error(
        "TLS handshake with the SOC at {0} failed: {1} (check that the SOC certificate is signed by soc.ca and names soc.server_name, and that this agent's certificate is from the SOC's agent CA)"
    )]
    Handshake(String, std::io::Error),
    #[error("no answer from the SOC at {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("gRPC transport: {0}")]
    Transport(Box<tonic::transport::Error>),
    #[error("the SOC refused the stream: {0}")]
    Refused(tonic::Status),
    #[error("the SOC broke the protocol: {0}")]
    Protocol(String),
    #[error("stream closed by the SOC")]
    Closed,
    #[error("spool: {0}")]
    Spool(#[from] owlet_spool::SpoolError),
}
