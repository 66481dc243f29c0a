//! The multi-reward QUARK loop (MaRio, method section D): quantile bins of the data pool, the
//! pool itself, the NLL + KL − entropy objective, and the loop (`mario-train mario`).

pub mod bins;
pub mod dev_eval;
pub mod dev_scores;
pub mod loss;
pub mod pool;
pub mod rewards;
pub mod run;
pub mod schedule;
pub mod selection;
pub mod settings;
pub mod teacher_data;
