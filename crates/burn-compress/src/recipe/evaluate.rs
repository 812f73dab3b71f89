//! `kind = "evaluate"`: a stage with the test accuracy of the model as it stands.

use serde::{Deserialize, Serialize};

/// An evaluate step: records a stage (masks in force, if a prune step left any). It takes no
/// keys besides `kind`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateStep {}
