//! Unit tests of the typed calls, the handles, the heap and the global heap against the mock server.

mod calls;
mod global;
mod heap;
