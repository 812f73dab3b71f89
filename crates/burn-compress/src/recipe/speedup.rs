//! `kind = "speedup"`: make the masked model physically smaller.

use serde::{Deserialize, Serialize};

use super::{Progress, RecipeError, err, typed};

/// A speedup step: the masks of the last prune step become a plan (channels kept per
/// dependency group, NNI's union rule when masks disagree), applied to the model. It takes no
/// keys besides `kind`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedupStep {}

pub(super) fn parse(
    t: &compress_core::toml::Table,
    ctx: &str,
    progress: &Progress,
) -> Result<SpeedupStep, RecipeError> {
    let step = typed(t, &["kind"], ctx)?;
    if !progress.pruned {
        return Err(err(ctx, "speedup needs masks: put a prune step before it"));
    }
    Ok(step)
}
