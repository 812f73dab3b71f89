//! Embedding: a gather of weight `[n, d]` rows by integer ids; the `d` features are new
//! channels on the output's last axis.

use burn_backend::ops::ModuleOps;
use burn_dispatch::{Dispatch, DispatchTensor};
use burn_ir::{EmbeddingOpIr, ModuleOperationIr, OperationIr};

use super::{Exec, OpRule, call};
use crate::Result;
use crate::onnx::{Attr, OnnxWriter};
use crate::rules::{Analysis, Map, Value};
use crate::views::{LayerCall, LayerKind, ParamViews, layer_of};

/// An embedding lookup.
pub(crate) struct Embedding<'a>(&'a EmbeddingOpIr);

impl<'a> Embedding<'a> {
    pub fn of(op: &'a OperationIr) -> Option<Self> {
        match op {
            OperationIr::Module(ModuleOperationIr::Embedding(e)) => Some(Self(e)),
            _ => None,
        }
    }
}

impl OpRule for Embedding<'_> {
    fn channels(&self, a: &mut Analysis, index: usize, op: &OperationIr) -> Result<()> {
        let e = self.0;
        let Some(w) = a.param(&e.weights) else {
            return Err(a.unsupported(index, op));
        };
        a.last_layer = Some(layer_of(&w).to_string());
        a.gathered.push(w.clone());
        let slots: Vec<usize> = (0..e.weights.shape[1]).map(|_| a.new_slot()).collect();
        for (j, &s) in slots.iter().enumerate() {
            a.attach(s, &w, 1, j);
        }
        let axis = e.out.shape.num_dims() - 1;
        a.set(&e.out, Value::Act(Some(Map { axis, slots })));
        Ok(())
    }

    fn execute(&self, e: &Exec<'_>) -> Result<DispatchTensor> {
        Ok(Dispatch::embedding(
            e.get(&self.0.weights)?,
            e.get(&self.0.indices)?,
        ))
    }

    fn layer_call(&self, views: &ParamViews) -> Option<LayerCall> {
        let e = self.0;
        let w = views.path(&e.weights)?;
        Some(call(
            LayerKind::Embedding,
            w,
            &e.indices,
            &e.out,
            &e.weights,
            None,
        ))
    }

    /// A `Gather` of the weight's rows (axis 0).
    fn onnx(&self, w: &mut OnnxWriter<'_>) -> Result<()> {
        let e = self.0;
        w.simple(
            "Gather",
            &[&e.weights, &e.indices],
            &e.out,
            vec![("axis", Attr::Int(0))],
        )
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{EmbeddingConfig, LinearConfig};
    use burn::prelude::*;

    use crate::ops::testing::{groups_of, macs};

    #[derive(Module, Debug)]
    struct EmbFc {
        emb: burn::nn::Embedding,
        fc: burn::nn::Linear,
    }

    #[test]
    fn embedding_features_couple_with_the_next_linears_input_and_cost_no_macs() {
        let d = Device::flex();
        let m = EmbFc {
            emb: EmbeddingConfig::new(10, 4).init(&d),
            fc: LinearConfig::new(4, 2).init(&d),
        };
        let f = |m: &EmbFc, d: &Device| m.emb.forward(Tensor::<2, Int>::zeros([1, 3], d));
        assert_eq!(groups_of(&m, f), vec![vec![("emb.weight".into(), 1)]]);
        assert_eq!(macs(&m, f), 0);
        let g = groups_of(&m, |m, d| {
            m.fc.forward(m.emb.forward(Tensor::<2, Int>::zeros([1, 3], d)))
        });
        assert!(g[0].contains(&("fc.weight".into(), 0)), "{g:?}");
    }
}
