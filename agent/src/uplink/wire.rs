//! The agent's end of the `owlet.v1.Telemetry/Stream` call, with one twist:
//! spooled batches go on the wire as the bytes the spool stored.
//!
//! An `AgentMessage` carrying a batch is field 2 (length-delimited) around an
//! encoded `Batch`; the spool already holds exactly that `Batch` encoding, so
//! the encoder writes the field key, the length and the stored bytes. The hot
//! path never decodes and re-encodes events, and the uplink never holds
//! decoded batches in memory. The result is byte-for-byte what prost would
//! produce (a unit test holds it to that).

use bytes::BufMut;
use owlet_proto::v1::{AgentMessage, Hello, SelfTest, SocMessage, agent_message};
use owlet_spool::EncodedBatch;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use tonic::Status;
use tonic::codec::{Codec, CompressionEncoding, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_prost::ProstDecoder;

/// `AgentMessage.batch`'s field number.
const BATCH_FIELD: u32 = 2;

/// What the uplink sends.
pub enum Outbound {
    Hello(Hello),
    Batch(EncodedBatch),
    /// A test event of `owlet selftest` (outside the agent's sequence).
    SelfTest(Box<SelfTest>),
}

struct OutboundEncoder;

impl Encoder for OutboundEncoder {
    type Item = Outbound;
    type Error = Status;

    fn encode(&mut self, item: Outbound, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Outbound::Hello(hello) => AgentMessage {
                body: Some(agent_message::Body::Hello(hello)),
            }
            .encode(dst)
            .map_err(|e| Status::internal(format!("encoding the hello: {e}"))),
            Outbound::SelfTest(test) => AgentMessage {
                body: Some(agent_message::Body::SelfTest(*test)),
            }
            .encode(dst)
            .map_err(|e| Status::internal(format!("encoding the self-test: {e}"))),
            Outbound::Batch(batch) => {
                frame_batch(&batch.bytes, dst);
                Ok(())
            }
        }
    }
}

/// Writes an `AgentMessage` whose `batch` is the already-encoded `Batch`.
fn frame_batch(encoded_batch: &[u8], dst: &mut impl BufMut) {
    encode_key(BATCH_FIELD, WireType::LengthDelimited, dst);
    encode_varint(encoded_batch.len() as u64, dst);
    dst.put_slice(encoded_batch);
}

struct UplinkCodec;

impl Codec for UplinkCodec {
    type Encode = Outbound;
    type Decode = SocMessage;
    type Encoder = OutboundEncoder;
    type Decoder = ProstDecoder<SocMessage>;

    fn encoder(&mut self) -> OutboundEncoder {
        OutboundEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<SocMessage> {
        ProstDecoder::default()
    }
}

/// Opens the stream: `outbound` feeds it, the returned stream carries the
/// SOC's answers.
pub async fn open(
    channel: Channel,
    compression: Option<CompressionEncoding>,
    outbound: tokio::sync::mpsc::Receiver<Outbound>,
) -> Result<tonic::Streaming<SocMessage>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(owlet_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(owlet_proto::MAX_MESSAGE_BYTES);
    if let Some(encoding) = compression {
        grpc = grpc.send_compressed(encoding).accept_compressed(encoding);
    }
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outbound));
    request
        .extensions_mut()
        .insert(tonic::GrpcMethod::new("owlet.v1.Telemetry", "Stream"));
    let path = PathAndQuery::from_static("/owlet.v1.Telemetry/Stream");
    Ok(grpc
        .streaming(request, path, UplinkCodec)
        .await?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::{AgentStatus, Batch, Event, event::Kind};

    #[test]
    fn hand_framed_batches_are_what_prost_would_write() {
        let batch = Batch {
            first_seq: 5,
            last_seq: 6,
            events: (5..=6)
                .map(|seq| Event {
                    seq,
                    time: Some(owlet_proto::now()),
                    kind: Some(Kind::AgentStatus(AgentStatus {
                        agent_version: "x".repeat(300),
                        ..Default::default()
                    })),
                })
                .collect(),
        };
        let expected = AgentMessage {
            body: Some(agent_message::Body::Batch(batch.clone())),
        }
        .encode_to_vec();
        let mut framed = Vec::new();
        frame_batch(&batch.encode_to_vec(), &mut framed);
        assert_eq!(framed, expected);
    }
}
