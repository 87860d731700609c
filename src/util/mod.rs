//! Neutral helpers every layer may use: clocks, sizes, locks, stop signals,
//! directory fsync, named threads. Nothing here knows about StreamHouse's
//! data model.

pub mod clock;
pub mod fs;
pub mod size;
pub mod sync;
pub mod thread;
