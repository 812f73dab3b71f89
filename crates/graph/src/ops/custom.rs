//! Custom ops (`OperationIr::Custom`): their channel rule comes from a registered
//! [`CustomOpRule`]; the replay cannot execute them.

use burn_dispatch::DispatchTensor;
use burn_ir::{CustomOpIr, OperationIr};

use super::{Exec, OpRule};
use crate::Result;
use crate::rules::{Analysis, Value};

/// How a custom op (`OperationIr::Custom`, by its id) treats channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Elementwise: every output has the channels of the first input.
    PassThrough,
    /// Mixes channels: its inputs' channels are pinned (kept), its outputs have none.
    Opaque,
}

/// A channel rule for a custom op, registered with `inventory::submit!`.
#[derive(Debug)]
pub struct CustomOpRule {
    /// The custom op's id (`CustomOpIr::id`).
    pub id: &'static str,
    /// What it does to channels.
    pub kind: RuleKind,
}

inventory::collect!(CustomOpRule);

/// A custom op.
pub(crate) struct Custom<'a>(&'a CustomOpIr);

impl<'a> Custom<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        match op {
            OperationIr::Custom(c) => Some(Self(c)),
            _ => None,
        }
    }
}

impl OpRule for Custom<'_> {
    fn channels(&self, a: &mut Analysis, index: usize, op: &OperationIr) -> Result<()> {
        let c = self.0;
        let rule = inventory::iter::<CustomOpRule>
            .into_iter()
            .find(|r| r.id == c.id);
        match (rule.map(|r| r.kind), c.inputs.first()) {
            (Some(RuleKind::PassThrough), Some(first)) => {
                for out in &c.outputs {
                    a.pass(first, out);
                }
            }
            (Some(_), _) => {
                for t in &c.inputs {
                    let m = a.map(t);
                    a.pin_map(&m, format!("custom op '{}' mixes channels", c.id));
                }
                for out in &c.outputs {
                    a.set(out, Value::Const);
                }
            }
            (None, _) => a.no_rule(index, op)?,
        }
        Ok(())
    }

    /// A custom op's kernel is not part of the capture: the replay refuses it, naming it.
    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        Err(e.refuse())
    }
}
