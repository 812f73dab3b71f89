//! Module traversal by dotted parameter path (`layer1.0.conv1.weight`).
//!
//! Burn's [`ModuleVisitor`] and [`ModuleMapper`] report module names one level at a time; every
//! traversal here wants the whole path. Implement [`PathVisitor`] or [`PathMapper`] (one method,
//! given the path) and run it with [`visit_params`] or [`map_params`]. Parameters of a
//! reparameterization are reached under the reparameterization's name
//! (`fc.weight.fake_quant.scale`).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

use crate::mask::map_param_leaf;

/// Sees every float parameter with its dotted path.
pub trait PathVisitor {
    /// One parameter.
    fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>);
}

/// Maps every float parameter, given its dotted path.
pub trait PathMapper {
    /// One parameter; return it unchanged to leave it alone.
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

struct Tracked<'a, T> {
    stack: Vec<String>,
    inner: &'a mut T,
}

impl<V: PathVisitor> ModuleVisitor for Tracked<'_, V> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.inner.visit(&self.stack.join("."), param);
    }
}

impl<P: PathMapper> ModuleMapper for Tracked<'_, P> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.inner.map(&self.stack.join("."), param)
    }
}

/// Run `visitor` over every float parameter of `module`.
pub fn visit_params<M: Module, V: PathVisitor>(module: &M, visitor: &mut V) {
    module.visit(&mut Tracked {
        stack: Vec::new(),
        inner: visitor,
    });
}

/// Run `mapper` over every float parameter of `module`.
pub fn map_params<M: Module, P: PathMapper>(module: M, mapper: &mut P) -> M {
    module.map(&mut Tracked {
        stack: Vec::new(),
        inner: mapper,
    })
}

/// `module` with the parameters at the paths of `values` replaced by those values (row-major,
/// reshaped to each parameter's shape) as fresh leaves that keep their gradient setting.
pub fn set_param_values<M: Module>(module: M, values: &BTreeMap<String, Vec<f32>>) -> M {
    struct Set<'a>(&'a BTreeMap<String, Vec<f32>>);
    impl PathMapper for Set<'_> {
        fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            match self.0.get(path) {
                Some(v) => map_param_leaf(param, |t| {
                    let shape = t.shape();
                    Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &t.device())
                        .reshape(shape)
                }),
                None => param,
            }
        }
    }
    map_params(module, &mut Set(values))
}

/// The rank-`R` float parameters whose path `wanted` accepts: their ids and current values
/// (`Param::val()`, still tracked for autodiff).
pub fn params_of_rank<const R: usize, M: Module>(
    module: &M,
    wanted: impl Fn(&str) -> bool,
) -> BTreeMap<String, (ParamId, Tensor<R>)> {
    struct Collect<F, const R: usize> {
        wanted: F,
        found: BTreeMap<String, (ParamId, Tensor<R>)>,
    }
    impl<F: Fn(&str) -> bool, const R: usize> PathVisitor for Collect<F, R> {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            if D != R || !(self.wanted)(path) {
                return;
            }
            let t = param.val();
            let mut dims = [0usize; R];
            dims.copy_from_slice(t.shape().as_slice());
            self.found
                .insert(path.to_string(), (param.id, t.reshape(dims)));
        }
    }
    let mut c = Collect {
        wanted,
        found: BTreeMap::new(),
    };
    visit_params(module, &mut c);
    c.found
}
