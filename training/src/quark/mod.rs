//! Pieces of the multi-reward QUARK loop (MaRio, method section D): quantile bins of the data
//! pool and the NLL + KL − entropy objective. The loop itself (`mario-train mario`) is not
//! written yet.

pub mod bins;
pub mod loss;
