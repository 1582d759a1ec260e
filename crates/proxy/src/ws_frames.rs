//! WebSocket frame boundaries in a byte stream, for a tunnel that closes a
//! WebSocket itself when the proxy drains: a close frame may only go between
//! two frames, never inside one (fragments of a message are frames too, and
//! a control frame may go between them). Reads frame headers only — at most
//! 14 bytes held — and counts payload bytes past: a payload is never
//! buffered, unmasked or checked, so masked and unmasked frames, extensions
//! and lengths up to 2^63 − 1 cost the same. Pure: no I/O, no allocation,
//! no panic on any input; a length the protocol forbids (the most
//! significant bit of a 64-bit length set) leaves no boundary known, and a
//! tunnel in that state is never given a close frame, only cut.

/// The opcode of a close frame.
const OP_CLOSE: u8 = 0x8;
/// The longest frame header: 2 bytes, a 64-bit length, a masking key.
const MAX_HEADER: usize = 14;
/// Close code 1001, going away: the endpoint (here the proxy) is leaving.
const GOING_AWAY: [u8; 2] = 1001u16.to_be_bytes();

/// Where one direction of a WebSocket stands: between frames, in a header,
/// or in a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frames {
    state: State,
    /// A whole close frame went through: this direction sends nothing more.
    closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `len` bytes of the next frame's header have been seen.
    Header { bytes: [u8; MAX_HEADER], len: u8 },
    /// In a payload, `remaining` bytes to its end.
    Payload { remaining: u64, opcode: u8 },
    /// A forbidden length: where frames end is not known any more.
    Lost,
}

impl Default for Frames {
    fn default() -> Frames {
        Frames {
            state: State::Header {
                bytes: [0; MAX_HEADER],
                len: 0,
            },
            closed: false,
        }
    }
}

/// What a (partial) header says.
enum Header {
    /// More bytes are needed.
    Partial,
    Complete {
        opcode: u8,
        payload: u64,
    },
    Forbidden,
}

fn parse(h: &[u8]) -> Header {
    let [first, second, rest @ ..] = h else {
        return Header::Partial;
    };
    let len7 = second & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    if rest.len() < ext + mask {
        return Header::Partial;
    }
    let payload = match len7 {
        126 => u64::from(u16::from_be_bytes([rest[0], rest[1]])),
        127 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&rest[..8]);
            let len = u64::from_be_bytes(len);
            if len >> 63 != 0 {
                return Header::Forbidden;
            }
            len
        }
        n => u64::from(n),
    };
    Header::Complete {
        opcode: first & 0x0f,
        payload,
    }
}

impl Frames {
    /// Whether the bytes seen so far end exactly at the end of a frame.
    pub(crate) fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { len: 0, .. })
    }

    /// Whether a whole close frame went through.
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    /// Takes `data`, the next bytes of the stream, and returns how many of
    /// them it took: all of them, or with `to_frame_end` only up to the end
    /// of the frame in progress (of the next one when at a boundary), so
    /// that what follows can be held back.
    pub(crate) fn advance(&mut self, data: &[u8], to_frame_end: bool) -> usize {
        let mut at = 0;
        while at < data.len() {
            let ended = match &mut self.state {
                State::Lost => return data.len(),
                State::Payload { remaining, opcode } => {
                    let left = u64::try_from(data.len() - at).unwrap_or(u64::MAX);
                    let take = left.min(*remaining);
                    // `take` is at most `data.len() - at`, so it fits.
                    at += usize::try_from(take).unwrap_or(data.len() - at);
                    *remaining -= take;
                    (*remaining == 0).then_some(*opcode)
                }
                State::Header { bytes, len } => {
                    let Some(slot) = bytes.get_mut(usize::from(*len)) else {
                        // A header never grows past its longest form.
                        self.state = State::Lost;
                        continue;
                    };
                    *slot = data[at];
                    at += 1;
                    *len += 1;
                    match parse(&bytes[..usize::from(*len)]) {
                        Header::Partial => None,
                        Header::Forbidden => {
                            self.state = State::Lost;
                            None
                        }
                        Header::Complete { opcode, payload: 0 } => Some(opcode),
                        Header::Complete { opcode, payload } => {
                            self.state = State::Payload {
                                remaining: payload,
                                opcode,
                            };
                            None
                        }
                    }
                }
            };
            if let Some(opcode) = ended {
                self.closed |= opcode == OP_CLOSE;
                self.state = Frames::default().state;
                if to_frame_end {
                    return at;
                }
            }
        }
        at
    }
}

/// A close frame with code 1001 (going away). Frames to a server (the
/// upstream) must be masked, with `mask`; frames to a client must not be.
pub(crate) fn going_away(mask: Option<[u8; 4]>) -> Vec<u8> {
    match mask {
        None => vec![0x80 | OP_CLOSE, 2, GOING_AWAY[0], GOING_AWAY[1]],
        Some(key) => vec![
            0x80 | OP_CLOSE,
            0x80 | 2,
            key[0],
            key[1],
            key[2],
            key[3],
            GOING_AWAY[0] ^ key[0],
            GOING_AWAY[1] ^ key[1],
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame's bytes: header (with the shortest length form, or `long`)
    /// and a payload of `len` bytes.
    fn frame(fin: bool, opcode: u8, mask: bool, len: usize, long: bool) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        let m = if mask { 0x80 } else { 0 };
        if long {
            f.push(m | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        } else if len < 126 {
            f.push(m | len as u8);
        } else if len <= 0xffff {
            f.push(m | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(m | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if mask {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        // Payload bytes that look like headers, to catch a parser that
        // reads them.
        f.extend(std::iter::repeat_n(0x7f, len));
        f
    }

    /// Random frames: fragmented messages with control frames between the
    /// fragments, masked or not, every length form; returns the stream and
    /// the offsets where frames end, and where the close frame ends.
    fn stream(rng: &mut fastrand::Rng) -> (Vec<u8>, Vec<usize>, Option<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mask = rng.bool();
        for _ in 0..rng.usize(1..30) {
            let fragments = rng.usize(1..4);
            for i in 0..fragments {
                let opcode = if i == 0 { rng.u8(1..3) } else { 0 };
                let len = match rng.u8(0..10) {
                    0 => rng.usize(126..70_000),
                    1 => 0,
                    _ => rng.usize(0..200),
                };
                bytes.extend(frame(
                    i + 1 == fragments,
                    opcode,
                    mask,
                    len,
                    rng.u8(0..8) == 0,
                ));
                ends.push(bytes.len());
                if rng.u8(0..4) == 0 {
                    // A ping or pong between fragments.
                    bytes.extend(frame(true, rng.u8(9..11), mask, rng.usize(0..126), false));
                    ends.push(bytes.len());
                }
            }
        }
        let close = rng.bool().then(|| {
            bytes.extend(frame(true, OP_CLOSE, mask, 2, false));
            bytes.len()
        });
        if let Some(end) = close {
            ends.push(end);
        }
        (bytes, ends, close)
    }

    #[test]
    fn boundaries_are_found_in_any_chunking() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let (bytes, ends, close) = stream(&mut rng);
            let mut frames = Frames::default();
            let mut at = 0;
            while at < bytes.len() {
                let chunk = rng.usize(1..=(bytes.len() - at).min(3000));
                let mut data = &bytes[at..at + chunk];
                while !data.is_empty() {
                    // Stop at each frame's end half of the time, as a
                    // draining tunnel does.
                    let to_frame_end = rng.bool();
                    let took = frames.advance(data, to_frame_end);
                    assert!(took > 0 && took <= data.len());
                    at += took;
                    data = &data[took..];
                    let boundary = ends.binary_search(&at).is_ok();
                    assert_eq!(frames.at_boundary(), boundary, "at {at} of {ends:?}");
                    if to_frame_end && !data.is_empty() {
                        assert!(boundary, "stopped at {at}, not at a frame's end");
                    }
                    assert_eq!(frames.closed(), close.is_some_and(|c| at >= c));
                }
            }
        }
    }

    #[test]
    fn advance_to_frame_end_stops_exactly_there() {
        let mut bytes = frame(false, 1, true, 300, false);
        let first = bytes.len();
        bytes.extend(frame(true, 9, true, 0, false));
        let second = bytes.len();
        bytes.extend(frame(true, 0, true, 5, false));
        let mut frames = Frames::default();
        assert_eq!(frames.advance(&bytes, true), first);
        assert!(frames.at_boundary());
        assert_eq!(frames.advance(&bytes[first..], true), second - first);
        assert_eq!(
            frames.advance(&bytes[second..], false),
            bytes.len() - second
        );
        assert!(frames.at_boundary() && !frames.closed());
    }

    #[test]
    fn a_forbidden_length_leaves_no_boundary() {
        let mut f = vec![0x82, 127];
        f.extend_from_slice(&u64::MAX.to_be_bytes());
        f.extend_from_slice(&[0; 100]);
        let mut frames = Frames::default();
        assert_eq!(frames.advance(&f, true), f.len());
        assert!(!frames.at_boundary());
        assert_eq!(frames.advance(&frame(true, 8, false, 2, false), true), 4);
        assert!(!frames.at_boundary() && !frames.closed());
    }

    #[test]
    fn the_longest_allowed_length_is_counted_without_overflow() {
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        f.extend_from_slice(&[9, 9, 9, 9]);
        let mut frames = Frames::default();
        assert_eq!(frames.advance(&f, true), f.len());
        assert_eq!(frames.advance(&[0; 4096], true), 4096);
        assert!(!frames.at_boundary());
    }

    #[test]
    fn any_bytes_are_taken_without_a_panic() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..2000 {
            let mut frames = Frames::default();
            let data: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let took = frames.advance(rest, rng.bool());
                assert!(took > 0 && took <= rest.len());
                rest = &rest[took..];
            }
        }
    }

    #[test]
    fn going_away_frames_parse_as_one_close_frame() {
        for mask in [None, Some([0xa1, 0xb2, 0xc3, 0xd4])] {
            let f = going_away(mask);
            let mut frames = Frames::default();
            assert_eq!(frames.advance(&f, true), f.len());
            assert!(frames.at_boundary() && frames.closed());
            let payload = &f[f.len() - 2..];
            let code = match mask {
                None => [payload[0], payload[1]],
                Some(k) => [payload[0] ^ k[0], payload[1] ^ k[1]],
            };
            assert_eq!(u16::from_be_bytes(code), 1001);
        }
    }
}
