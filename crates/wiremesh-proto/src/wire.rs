//! Control messages over a QUIC stream: the core's length-prefixed frames, read with a size limit.

use bytes::Bytes;
use wiremesh_core::frame::{FrameDecoder, FrameError, encode_frame};
use wiremesh_core::messages::{MAX_MESSAGE_LEN, Message};

/// The largest message an agent sends (hello, enrollment, endpoint report); the controller reads
/// frames up to this size.
pub const MAX_AGENT_FRAME: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("cannot read from the stream: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("cannot write to the stream: {0}")]
    Write(#[from] quinn::WriteError),
}

/// A message encoded as one frame, written to many streams without a copy for each: quinn keeps
/// the shared buffer until every stream has sent it.
pub fn shared_frame(message: &Message) -> Result<Bytes, WireError> {
    Ok(Bytes::from(encode_frame(
        &message.encode(),
        MAX_MESSAGE_LEN,
    )?))
}

/// Writes a frame made by [`shared_frame`].
pub async fn write_frame(send: &mut quinn::SendStream, frame: Bytes) -> Result<(), WireError> {
    send.write_chunk(frame).await?;
    Ok(())
}

/// Writes one message as a frame.
pub async fn write_message(
    send: &mut quinn::SendStream,
    message: &Message,
) -> Result<(), WireError> {
    let frame = encode_frame(&message.encode(), MAX_MESSAGE_LEN)?;
    send.write_all(&frame).await?;
    Ok(())
}

/// Reads whole frames from a stream, refusing any frame over its limit as soon as its header
/// arrives.
pub struct FrameReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    chunk: Box<[u8]>,
}

impl FrameReader {
    pub fn new(recv: quinn::RecvStream, max_frame: usize) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(max_frame),
            chunk: vec![0; 16 << 10].into_boxed_slice(),
        }
    }

    /// The next frame's payload; `None` once the peer finished the stream.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            match self.recv.read(&mut self.chunk).await? {
                Some(n) => self.decoder.push(&self.chunk[..n]),
                None => return Ok(None),
            }
        }
    }
}
