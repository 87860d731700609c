//! Neutral helpers every layer may use: clocks, sizes, locks, stop signals,
//! directory fsync, named threads, the open-files limit. Nothing here knows about StreamHouse's
//! data model.

pub mod clock;
pub mod fs;
pub mod rlimit;
pub mod size;
pub mod suggest;
pub mod sync;
pub mod thread;
pub mod xorshift;
