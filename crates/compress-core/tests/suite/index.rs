//! ModuleIndex over nested structs, Vec, Option and user-defined modules.

use compress_core::ModuleIndex;
use compress_core::testing::{Nested, test_device};

#[test]
fn nested_vec_option_and_user_modules_get_pytorch_style_paths() {
    let model = Nested::new(&test_device());
    let index = ModuleIndex::from_module(&model);
    let layers: Vec<(&str, &str)> = index
        .layers()
        .iter()
        .map(|l| (l.path.as_str(), l.type_name.as_str()))
        .collect();
    assert_eq!(
        layers,
        [
            ("stem", "Conv2d"),
            ("blocks.0.conv", "Conv2d"),
            ("blocks.0.bn", "BatchNorm"),
            ("blocks.1.conv", "Conv2d"),
            ("blocks.1.bn", "BatchNorm"),
            ("head", "Linear"),
            ("scale", "Scale"),
        ]
    );
    let bn = index.layer("blocks.1.bn").unwrap();
    let names: Vec<&str> = bn.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["gamma", "beta", "running_mean", "running_var"]);
    assert_eq!(index.param("head.weight").unwrap().shape, vec![4, 3]);
    assert_eq!(
        index.param("scale.factor").unwrap().id,
        model.scale.factor.id
    );
    assert!(index.param("aux.weight").is_none());
    assert_eq!(index.module_type("blocks.0"), Some("Block"));
    assert_eq!(index.module_type(""), Some("Nested"));
}
