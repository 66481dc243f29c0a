//! The pipeline's data (stage 0): a generated knowledge world when the configuration has a
//! `[world]` table (`mario-train world` writes one alone), else the configured datasets.

use std::path::Path;

use anyhow::{bail, Result};

use crate::config::{DataSection, RunConfig};
use crate::world::World;

/// The pipeline's data. With a `[world]` table: writes the world into `<out>/data/world/`
/// (skipped when the same world is already there; another world there is an error) and the
/// pipeline trains on it. Otherwise the configured `[data]` datasets.
pub fn pipeline_data(cfg: &RunConfig, out: &Path) -> Result<DataSection> {
    let Some(settings) = &cfg.world else {
        return Ok(cfg.data.clone());
    };
    if !cfg.data.datasets.is_empty() {
        bail!(
            "the configuration has both a [world] table and [data] datasets {:?}: a pipeline \
             trains on one or the other",
            cfg.data.datasets
        );
    }
    let dir = out.join("data").join("world");
    match World::load(&dir)? {
        Some(w) if &w.settings == settings => {
            tracing::info!("stage world: {} exists", dir.display());
        }
        Some(_) => bail!(
            "{} holds a world made with other [world] settings than the configuration's; \
             remove it or choose another output folder",
            dir.display()
        ),
        None => {
            let summary = World::generate(settings)?.write(&dir)?;
            tracing::info!(
                "stage world: wrote {} ({} facts, {} training questions, {} silver samples, \
                 teacher accuracy {:.2})",
                dir.display(),
                summary.facts,
                summary.train_questions,
                summary.silver,
                summary.teacher_accuracy
            );
        }
    }
    Ok(DataSection {
        datasets: vec!["world".into()],
        dir: Some(out.join("data")),
    })
}
