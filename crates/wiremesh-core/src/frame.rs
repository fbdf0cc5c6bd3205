//! Length-prefixed framing for control messages on a byte stream: a 4-byte big-endian length,
//! then that many bytes. [`FrameDecoder`] is sans-IO: push what the socket gave, pop whole frames.
//! A length over the decoder's maximum is an error at once, before any of the payload is buffered.

use crate::messages::MAX_MESSAGE_LEN;

/// The default (and largest sensible) frame payload size.
pub const MAX_FRAME_LEN: usize = MAX_MESSAGE_LEN;
const HEADER_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
}

/// `payload` with its length prefix.
pub fn encode_frame(payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let too_large = FrameError::TooLarge {
        len: payload.len(),
        max,
    };
    let len = u32::try_from(payload.len()).map_err(|_| too_large)?;
    if payload.len() > max {
        return Err(too_large);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Reassembles frames from stream chunks. After an error the stream is unusable: close it.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` begin. Frames are consumed by moving this and the buffer is
    /// compacted once per batch, when no whole frame is left: removing each frame from the front
    /// would move the rest of the buffer every time, quadratic in the frames of one read.
    start: usize,
    max: usize,
}

impl FrameDecoder {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Appends bytes read from the stream; call [`Self::next_frame`] until it gives `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's payload, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let pending = &self.buf[self.start..];
        let Some(header) = pending.first_chunk::<HEADER_LEN>() else {
            self.compact();
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let Some(payload) = pending.get(HEADER_LEN..HEADER_LEN + len) else {
            self.compact();
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.start += HEADER_LEN + len;
        Ok(Some(payload))
    }

    fn compact(&mut self) {
        self.buf.drain(..self.start);
        self.start = 0;
    }

    /// Bytes held that do not yet form a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_chunking() {
        let payloads: Vec<Vec<u8>> = vec![vec![], vec![1], vec![2; 300], vec![3; 5]];
        let stream: Vec<u8> = payloads
            .iter()
            .flat_map(|p| encode_frame(p, 1000).unwrap())
            .collect();
        for chunk in 1..=stream.len() {
            let mut d = FrameDecoder::new(1000);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(frame) = d.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got, payloads, "chunk size {chunk}");
            assert_eq!(d.buffered(), 0);
        }
    }

    /// Frames popped between pushes, without reaching `None`, keep their order and bytes.
    #[test]
    fn pushing_between_pops_keeps_the_stream() {
        let mut d = FrameDecoder::new(100);
        d.push(
            &[
                encode_frame(b"one", 100).unwrap(),
                encode_frame(b"two", 100).unwrap(),
            ]
            .concat(),
        );
        assert_eq!(d.next_frame(), Ok(Some(b"one".to_vec())));
        d.push(&encode_frame(b"three", 100).unwrap()[..3]);
        assert_eq!(d.next_frame(), Ok(Some(b"two".to_vec())));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 3);
        d.push(&encode_frame(b"three", 100).unwrap()[3..]);
        assert_eq!(d.next_frame(), Ok(Some(b"three".to_vec())));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversized_frames_are_refused_early() {
        assert_eq!(
            encode_frame(&[0; 11], 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        let mut d = FrameDecoder::new(10);
        d.push(&[0, 0, 0, 11]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        let mut d = FrameDecoder::default();
        d.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }
}
