//! ModuleIndex: every layer of any Burn module, by dotted path.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// One parameter (or buffer) of a layer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Field name inside the layer (`weight`, `running_mean`).
    pub name: String,
    /// Full dotted path (`layer1.0.conv1.weight`).
    pub path: String,
    /// Burn's parameter id.
    pub id: ParamId,
    /// Shape in Burn's layout.
    pub shape: Vec<usize>,
}

/// One layer: the innermost module that owns parameters directly.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Dotted path (`layer1.0.conv1`); NNI's `op_names` are these.
    pub path: String,
    /// Struct name (`Conv2d`); NNI's `op_types` are these.
    pub type_name: String,
    /// Its parameters, in visiting order.
    pub params: Vec<ParamInfo>,
}

impl LayerInfo {
    /// A parameter by field name.
    pub fn param(&self, name: &str) -> Option<&ParamInfo> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Its [`LayerSpec`](crate::layers::LayerSpec) (a user-registered spec wins over the built-in
    /// one), `None` for a type nobody described.
    pub fn spec(&self) -> Option<crate::layers::LayerSpec> {
        crate::layers::LayerSpec::find(&self.type_name)
    }

    /// The output-channel axis of its parameter `name`, as its spec says.
    pub fn out_axis(&self, name: &str) -> Option<usize> {
        self.spec()?.param(name)?.out_axis
    }
}

/// Every layer and module of a model, by path.
///
/// Built with a path-tracking [`ModuleVisitor`]: Burn calls `enter_module(field, "Struct:Parent")`
/// around every field, so a parameter's path is the stack of field names and its layer type is
/// the struct that holds the field. Nested structs, `Vec` (index as name), `Option` (no level of
/// its own) and user-defined module types all work.
///
/// ```
/// use burn::nn::{Linear, LinearConfig};
/// use burn::prelude::*;
/// use compress_core::ModuleIndex;
///
/// let linear: Linear = LinearConfig::new(4, 3).init(&Device::flex());
/// let index = ModuleIndex::from_module(&linear);
/// assert_eq!(index.param("weight").unwrap().shape, vec![4, 3]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    root_type: String,
    layers: Vec<LayerInfo>,
    modules: BTreeMap<String, String>,
}

impl ModuleIndex {
    /// Index a module. Lazy parameters are not initialized.
    pub fn from_module<M: Module>(module: &M) -> Self {
        let mut visitor = IndexVisitor::default();
        module.visit(&mut visitor);
        let mut layers: Vec<LayerInfo> = Vec::new();
        let mut positions: BTreeMap<String, usize> = BTreeMap::new();
        for (layer_path, layer_type, param) in visitor.params {
            let pos = *positions.entry(layer_path.clone()).or_insert_with(|| {
                layers.push(LayerInfo {
                    path: layer_path.clone(),
                    type_name: layer_type.clone(),
                    params: Vec::new(),
                });
                layers.len() - 1
            });
            layers[pos].params.push(param);
        }
        Self {
            root_type: visitor.root_type.unwrap_or_default(),
            layers,
            modules: visitor.modules,
        }
    }

    /// Layers in visiting order.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// A layer by path.
    pub fn layer(&self, path: &str) -> Option<&LayerInfo> {
        self.layers.iter().find(|l| l.path == path)
    }

    /// A parameter by full path.
    pub fn param(&self, path: &str) -> Option<&ParamInfo> {
        self.params().find(|p| p.path == path)
    }

    /// The output-channel axis of the parameter at `path` (`fc.weight`), from its layer's
    /// [`LayerSpec`](crate::layers::LayerSpec); `None` when the layer has no spec or the spec gives the
    /// parameter no output axis.
    pub fn out_axis(&self, path: &str) -> Option<usize> {
        let (layer, name) = path.rsplit_once('.')?;
        self.layer(layer)?.out_axis(name)
    }

    /// Every parameter, in visiting order.
    pub fn params(&self) -> impl Iterator<Item = &ParamInfo> {
        self.layers.iter().flat_map(|l| l.params.iter())
    }

    /// The struct type of any module path, containers included (`""` is the root).
    pub fn module_type(&self, path: &str) -> Option<&str> {
        if path.is_empty() {
            return Some(&self.root_type);
        }
        self.modules.get(path).map(String::as_str)
    }
}

#[derive(Default)]
struct IndexVisitor {
    stack: Vec<(String, String)>,
    root_type: Option<String>,
    modules: BTreeMap<String, String>,
    params: Vec<(String, String, ParamInfo)>,
}

fn strip_kind(container_type: &str) -> &str {
    container_type
        .strip_prefix("Struct:")
        .or_else(|| container_type.strip_prefix("Enum:"))
        .unwrap_or(container_type)
}

impl IndexVisitor {
    fn path(&self) -> String {
        let names: Vec<&str> = self.stack.iter().map(|(n, _)| n.as_str()).collect();
        names.join(".")
    }
}

impl ModuleVisitor for IndexVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        // `container_type` is the type of the module that holds the field being entered.
        let parent = self.path();
        if parent.is_empty() {
            self.root_type
                .get_or_insert_with(|| strip_kind(container_type).to_string());
        } else if container_type.starts_with("Struct:") || container_type.starts_with("Enum:") {
            self.modules
                .entry(parent)
                .or_insert_with(|| strip_kind(container_type).to_string());
        }
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some((name, container)) = self.stack.last() else {
            return;
        };
        let layer_path = self.stack[..self.stack.len() - 1]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(".");
        self.params.push((
            layer_path,
            strip_kind(container).to_string(),
            ParamInfo {
                name: name.clone(),
                path: self.path(),
                id: param.id,
                shape: param.lazy_shape().to_vec(),
            },
        ));
    }
}

/// Handles (not copies) to every parameter whose path `wanted` accepts, flattened, with their
/// shapes: read them with [`read_flat`] where they are needed, so weights can be streamed
/// through a computation instead of all copied to the host at once.
pub fn param_handles<M: Module>(
    module: &M,
    wanted: impl Fn(&str) -> bool,
) -> BTreeMap<String, (Tensor<1>, Vec<usize>)> {
    struct Collector<F> {
        wanted: F,
        out: BTreeMap<String, (Tensor<1>, Vec<usize>)>,
    }
    impl<F: Fn(&str) -> bool> crate::paths::PathVisitor for Collector<F> {
        fn visit<const D: usize>(&mut self, path: &str, param: &Param<Tensor<D>>) {
            if (self.wanted)(path) {
                let tensor = param.val();
                let shape = tensor.shape().to_vec();
                let n = shape.iter().product::<usize>();
                self.out
                    .insert(path.to_string(), (tensor.reshape([n]), shape));
            }
        }
    }
    let mut collector = Collector {
        wanted,
        out: BTreeMap::new(),
    };
    crate::paths::visit_params(module, &mut collector);
    collector.out
}

/// Copy one handle from [`param_handles`] to the host.
pub fn read_flat(
    path: &str,
    tensor: &Tensor<1>,
    shape: &[usize],
) -> crate::Result<crate::Dense<f32>> {
    // `into_data` on a tensor the module still holds is a single-threaded copy; an elementwise
    // op gives a fresh tensor (computed in parallel) that `into_data` moves out. `x * 1` is exact.
    let data = tensor.clone().mul_scalar(1.0).into_data();
    crate::Dense::from_data(data, path).map(|d| d.reshape(shape.to_vec()))
}
