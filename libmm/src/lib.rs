//! libmm: the client library of the memory manager.
//!
//! A process links `libmm` to reach the MM server: [`protocol`] defines every
//! request and reply (shared with the server, which depends on this crate for
//! exactly that), encoded with postcard into message registers.
#![no_std]
#![forbid(unsafe_code)]

pub mod protocol;
