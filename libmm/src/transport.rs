//! The transport: how a request reaches the MM server and how its reply comes back.
//!
//! A [`Transport`] turns a [`Request`] into a [`Reply`] or an [`Error`]. The
//! real one, [`RtTransport`], is a `Call` on the client's badged endpoint cap
//! to the MM server through `platform/rt` (so the same code runs in QEMU and
//! in the simulator); the mock in [`crate::mock`] runs a small in-process
//! server instead. Both go through the same two pure functions,
//! [`encode_request`] and [`decode_reply`], so the unit tests exercise the
//! exact words and labels the real transport sends and reads.
//!
//! # The message
//!
//! The request is postcard-encoded into message words with
//! [`protocol::encode`] and sent with label [`LABEL_REQUEST`]. The first four
//! words travel in registers (`call_with_mrs`, seL4_CallWithMRs): a request
//! of at most four words — most of them — never touches the IPC buffer;
//! longer ones put words 4.. in the buffer. The reply's label decides:
//!
//! | label               | meaning                                        | result |
//! |---------------------|------------------------------------------------|--------|
//! | [`LABEL_OK`]        | the words are a postcard [`Reply`]             | `Ok(reply)`, or [`CallError::BadReply`] if they do not decode |
//! | [`LABEL_ERROR`]     | MR0 is an [`MmError`] code                     | [`Error::Mm`], or [`CallError::UnknownErrorCode`] |
//! | [`LABEL_MALFORMED`] | the server could not decode the request        | [`CallError::Malformed`] |
//! | anything else       | not an MM reply (e.g. a kernel error on a bad cap) | [`CallError::UnexpectedLabel`] |
//!
//! # Finding the server
//!
//! The client's boot manifest grants it an endpoint cap to the MM server
//! named [`MM_ENDPOINT_NAME`] (`"mm"`); [`RtTransport::from_boot_info`] looks
//! it up.

use core::fmt;

use abi::boot::{BootInfo, CapKind};
use abi::message::MAX_LENGTH;
use abi::syscall::FAST_MESSAGE_REGISTERS;
use abi::{CPtr, MessageInfo, Word};

use crate::protocol::{
    self, LABEL_ERROR, LABEL_MALFORMED, LABEL_OK, LABEL_REQUEST, MAX_WORDS, MmError, Reply, Request,
};

/// The name under which a client's boot info lists its endpoint cap to the MM server.
pub const MM_ENDPOINT_NAME: &str = "mm";

/// A failure of the transport rather than of the request: the request may
/// or may not have been carried out only where noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallError {
    /// The boot info lists no endpoint named [`MM_ENDPOINT_NAME`].
    NoServer,
    /// The server could not decode the request ([`LABEL_MALFORMED`]); nothing changed.
    Malformed,
    /// The reply did not decode, or was not the kind of reply the request
    /// calls for (a server bug or a protocol mismatch).
    BadReply,
    /// An error reply with a code this library does not know (a newer server).
    UnknownErrorCode(Word),
    /// A reply label that is not one of the protocol's (e.g. the kernel's
    /// error for an invalid capability).
    UnexpectedLabel(Word),
}

/// Why a call failed: the server refused it, or the transport failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The server understood the request and refused it; nothing changed.
    Mm(MmError),
    /// The transport failed.
    Call(CallError),
}

impl From<MmError> for Error {
    fn from(e: MmError) -> Error {
        Error::Mm(e)
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        Error::Call(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Mm(e) => write!(f, "MM server refused the request: {e:?}"),
            Error::Call(CallError::NoServer) => write!(f, "no \"{MM_ENDPOINT_NAME}\" endpoint"),
            Error::Call(CallError::Malformed) => {
                write!(f, "the server could not decode the request")
            }
            Error::Call(CallError::BadReply) => write!(f, "the reply did not decode"),
            Error::Call(CallError::UnknownErrorCode(c)) => write!(f, "unknown error code {c}"),
            Error::Call(CallError::UnexpectedLabel(l)) => {
                write!(f, "unexpected reply label {l:#x}")
            }
        }
    }
}

/// Carries a request to the MM server and brings back its reply.
pub trait Transport {
    /// Sends `req` and waits for the reply.
    fn call(&self, req: &Request) -> Result<Reply, Error>;
}

impl<T: Transport + ?Sized> Transport for &T {
    fn call(&self, req: &Request) -> Result<Reply, Error> {
        (**self).call(req)
    }
}

/// Encodes `req` into `words` and returns the message tag to send it with
/// (label [`LABEL_REQUEST`], the word count as length).
pub fn encode_request(req: &Request, words: &mut [Word; MAX_WORDS]) -> MessageInfo {
    let n = protocol::encode(req, words);
    MessageInfo::new(LABEL_REQUEST, 0, 0, n)
}

/// Decodes a reply from its tag and message words (at least
/// `info.length()` of them; extra words are ignored).
pub fn decode_reply(info: MessageInfo, words: &[Word]) -> Result<Reply, Error> {
    let n = info.length().min(words.len());
    match info.label() {
        LABEL_OK => protocol::decode(&words[..n]).map_err(|_| CallError::BadReply.into()),
        LABEL_ERROR => {
            let code = if n > 0 { words[0] } else { 0 };
            Err(match MmError::from_code(code) {
                Some(e) => Error::Mm(e),
                None => Error::Call(CallError::UnknownErrorCode(code)),
            })
        }
        LABEL_MALFORMED => Err(CallError::Malformed.into()),
        other => Err(CallError::UnexpectedLabel(other).into()),
    }
}

/// The real transport: a `Call` on the MM endpoint through `platform/rt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtTransport {
    endpoint: CPtr,
}

impl RtTransport {
    /// A transport over the endpoint cap `endpoint`.
    pub const fn new(endpoint: CPtr) -> Self {
        RtTransport { endpoint }
    }

    /// The transport over the endpoint the boot info names
    /// [`MM_ENDPOINT_NAME`]; [`CallError::NoServer`] if there is none (or
    /// that name is not an endpoint).
    pub fn from_boot_info(boot: &BootInfo) -> Result<Self, Error> {
        match boot.find(MM_ENDPOINT_NAME) {
            Some(d) if d.kind == CapKind::Endpoint => Ok(RtTransport::new(CPtr(d.slot))),
            _ => Err(CallError::NoServer.into()),
        }
    }

    /// The endpoint cap.
    pub const fn endpoint(&self) -> CPtr {
        self.endpoint
    }
}

impl Transport for RtTransport {
    fn call(&self, req: &Request) -> Result<Reply, Error> {
        let mut words = [0; MAX_WORDS];
        let info = encode_request(req, &mut words);
        let mut mrs = [0; FAST_MESSAGE_REGISTERS];
        mrs.copy_from_slice(&words[..FAST_MESSAGE_REGISTERS]);
        // Words past the register MRs go in the IPC buffer.
        for (i, &w) in words
            .iter()
            .enumerate()
            .take(info.length())
            .skip(FAST_MESSAGE_REGISTERS)
        {
            rt::set_mr(i, w);
        }
        let reply = rt::call_with_mrs(self.endpoint, info, &mut mrs);
        let n = reply.length().min(MAX_LENGTH);
        words[..FAST_MESSAGE_REGISTERS].copy_from_slice(&mrs);
        for (i, w) in words
            .iter_mut()
            .enumerate()
            .take(n)
            .skip(FAST_MESSAGE_REGISTERS)
        {
            *w = rt::get_mr(i);
        }
        decode_reply(reply, &words[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Align, MapFlags, Prot};
    use abi::boot::CapDescriptor;

    #[test]
    fn requests_carry_the_request_label_and_their_length() {
        let mut words = [0; MAX_WORDS];
        let req = Request::Unmap {
            addr: 0x1000_0000,
            len: 0x2000,
        };
        let info = encode_request(&req, &mut words);
        assert_eq!(info.label(), LABEL_REQUEST);
        assert!(info.length() >= 1 && info.length() <= FAST_MESSAGE_REGISTERS);
        assert_eq!(
            protocol::decode::<Request>(&words[..info.length()]),
            Ok(req)
        );
    }

    #[test]
    fn reply_labels_map_to_results() {
        let mut words = [0; MAX_WORDS];
        let mapped = Reply::Mapped {
            addr: 0x4000,
            len: 0x2000,
        };
        let n = protocol::encode(&mapped, &mut words);
        let ok = MessageInfo::new(LABEL_OK, 0, 0, n);
        assert_eq!(decode_reply(ok, &words), Ok(mapped));

        let err = MessageInfo::new(LABEL_ERROR, 0, 0, 1);
        assert_eq!(
            decode_reply(err, &[MmError::QuotaExceeded.code()]),
            Err(Error::Mm(MmError::QuotaExceeded))
        );
        assert_eq!(
            decode_reply(err, &[999]),
            Err(Error::Call(CallError::UnknownErrorCode(999)))
        );
        // An error reply without its word: code 0 is never an error.
        assert_eq!(
            decode_reply(MessageInfo::new(LABEL_ERROR, 0, 0, 0), &[]),
            Err(Error::Call(CallError::UnknownErrorCode(0)))
        );
        assert_eq!(
            decode_reply(MessageInfo::new(LABEL_MALFORMED, 0, 0, 0), &[]),
            Err(Error::Call(CallError::Malformed))
        );
        assert_eq!(
            decode_reply(MessageInfo::new(7, 0, 0, 0), &[]),
            Err(Error::Call(CallError::UnexpectedLabel(7)))
        );
        // An OK reply whose words are garbage, or missing.
        assert_eq!(
            decode_reply(MessageInfo::new(LABEL_OK, 0, 0, 2), &[u64::MAX, u64::MAX]),
            Err(Error::Call(CallError::BadReply))
        );
        assert_eq!(
            decode_reply(MessageInfo::new(LABEL_OK, 0, 0, 0), &[]),
            Err(Error::Call(CallError::BadReply))
        );
    }

    #[test]
    fn reply_length_is_bounded_by_the_words_given() {
        let mut words = [0; MAX_WORDS];
        let n = protocol::encode(&Reply::Handle { handle: 3 }, &mut words);
        // A tag claiming more words than arrived reads only those that did.
        let info = MessageInfo::new(LABEL_OK, 0, 0, 100);
        assert_eq!(
            decode_reply(info, &words[..n]),
            Ok(Reply::Handle { handle: 3 })
        );
    }

    #[test]
    fn the_server_is_found_by_name() {
        let mut boot = BootInfo::new(12, 0x7000_0000, 3);
        assert_eq!(
            RtTransport::from_boot_info(&boot),
            Err(Error::Call(CallError::NoServer))
        );
        boot.push(CapDescriptor {
            slot: 16,
            kind: CapKind::Notification,
            size_bits: 0,
            value: 0,
            name: CapDescriptor::name_bytes(MM_ENDPOINT_NAME),
        })
        .unwrap();
        // A cap of that name that is not an endpoint is not the server.
        assert!(RtTransport::from_boot_info(&boot).is_err());
        let mut boot = BootInfo::new(12, 0x7000_0000, 3);
        boot.push(CapDescriptor {
            slot: 21,
            kind: CapKind::Endpoint,
            size_bits: 0,
            value: 9,
            name: CapDescriptor::name_bytes(MM_ENDPOINT_NAME),
        })
        .unwrap();
        let t = RtTransport::from_boot_info(&boot).unwrap();
        assert_eq!(t.endpoint(), CPtr(21));
    }

    #[test]
    fn map_requests_fit_the_registers() {
        let mut words = [0; MAX_WORDS];
        let info = encode_request(
            &Request::Map {
                addr: 0x7fff_ffff_f000,
                len: 1 << 30,
                prot: Prot::READ_WRITE,
                flags: MapFlags::FIXED.union(MapFlags::POPULATE),
                align: Align::MAX_MAP,
            },
            &mut words,
        );
        assert!(info.length() <= FAST_MESSAGE_REGISTERS);
    }
}
