//! Unit tests of the typed calls, the handles, the heap, the global heap and the DMA pools against the mock server.

mod calls;
mod dmapool;
mod global;
mod heap;
