//! Shared handles on quantizers, so that a fake-quantized parameter can name its quantizer in
//! its own tensors.
//!
//! The fake quantization of a weight ([`FakeQuantReparam`](crate::FakeQuantReparam)) holds its
//! quantizer as an `Arc<dyn Quantizer>`, which `Param::val()` calls. The graph replay, however,
//! rebuilds a parameter from what a module visitor sees: parameters only (compress-graph's
//! `ReparamRebuild` gets the base and the reparameterization's tensors by field name, never its
//! Rust fields). So each handle also has a small integer id, written into the
//! reparameterization's constant `spec` tensor; the rebuild resolves the id here.
//!
//! Why an id in a process table rather than a registry name: a name would rebuild the
//! quantizer from its registry entry with default options and lose the options it was built
//! with, and a quantizer constructed directly (never registered) has no name to look up. The
//! table holds weak references: a slot is reused once no module holds its quantizer any more,
//! so the table stays as small as the number of live quantizers. Ids stay below 2^24, exact in
//! an `f32`.
use std::fmt;
use std::sync::{Arc, RwLock, Weak};

use compress_core::Quantizer;

static TABLE: RwLock<Vec<Weak<dyn Quantizer>>> = RwLock::new(Vec::new());

/// A quantizer shared between a quantization driver and the fake quantization it attaches,
/// with the id the graph replay resolves it by.
#[derive(Clone)]
pub struct QuantizerHandle {
    id: u32,
    quantizer: Arc<dyn Quantizer>,
}

impl QuantizerHandle {
    /// A handle on `quantizer` (the same id for the same `Arc`).
    ///
    /// # Panics
    /// If the table's lock is poisoned (a panic while registering), or more than 2^24
    /// quantizers are alive at once.
    pub fn new(quantizer: Arc<dyn Quantizer>) -> Self {
        let mut table = TABLE
            .write()
            .expect("the quantizer table's lock is poisoned");
        let same = |w: &Weak<dyn Quantizer>| {
            w.upgrade()
                .is_some_and(|q| std::ptr::addr_eq(Arc::as_ptr(&q), Arc::as_ptr(&quantizer)))
        };
        let id = match table.iter().position(same) {
            Some(i) => i,
            None => match table.iter().position(|w| w.strong_count() == 0) {
                Some(free) => {
                    table[free] = Arc::downgrade(&quantizer);
                    free
                }
                None => {
                    table.push(Arc::downgrade(&quantizer));
                    table.len() - 1
                }
            },
        };
        assert!(id < 1 << 24, "more than 2^24 live quantizers");
        Self {
            id: id as u32,
            quantizer,
        }
    }

    /// The handle with this id, while its quantizer is alive.
    pub fn resolve(id: u32) -> Option<Self> {
        let table = TABLE.read().ok()?;
        let quantizer = table.get(id as usize)?.upgrade()?;
        Some(Self { id, quantizer })
    }

    /// The id (exact as an `f32`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The quantizer.
    pub fn quantizer(&self) -> &dyn Quantizer {
        self.quantizer.as_ref()
    }

    /// The shared quantizer.
    pub fn shared(&self) -> Arc<dyn Quantizer> {
        self.quantizer.clone()
    }
}

impl fmt::Debug for QuantizerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuantizerHandle({} #{})", self.quantizer.name(), self.id)
    }
}

impl fmt::Display for QuantizerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.quantizer.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;
    use compress_core::{
        Result,
        quantizer::{ActivationInput, FakeQuantGrid},
    };

    struct Named;
    impl Quantizer for Named {
        fn name(&self) -> &str {
            "named"
        }
        fn fake_quant(&self, weight: Tensor<4>, _: &FakeQuantGrid) -> Tensor<4> {
            weight
        }
        fn quantize_activation(&self, x: Tensor<3>, _: &ActivationInput<'_>) -> Result<Tensor<3>> {
            Ok(x)
        }
    }

    #[test]
    fn a_handle_resolves_while_its_quantizer_lives_and_its_slot_is_reused_after() {
        let q: Arc<dyn Quantizer> = Arc::new(Named);
        let a = QuantizerHandle::new(q.clone());
        assert_eq!(
            QuantizerHandle::new(q.clone()).id(),
            a.id(),
            "same Arc, same id"
        );
        let other = QuantizerHandle::new(Arc::new(Named));
        assert_ne!(other.id(), a.id());
        let resolved = QuantizerHandle::resolve(a.id()).unwrap();
        assert_eq!(resolved.quantizer().name(), "named");
        assert_eq!(
            format!("{a:?}"),
            format!("QuantizerHandle(named #{})", a.id())
        );
        let id = a.id();
        drop((q, a, resolved));
        assert!(
            QuantizerHandle::resolve(id).is_none(),
            "dead quantizers do not resolve"
        );
    }
}
