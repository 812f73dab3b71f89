//! How rules resolve against a model: selection, shortcuts, templates, precedence.

use burn::module::Module;
use burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};
use compress_core::testing::{Nested, test_device};
use compress_core::{
    CompressConfig, ModuleIndex,
    config::{Mode, QuantDtype},
    targets::{ConfigWarning, Resolved},
};
use compress_zoo::SmallCnn;

fn resolve<M: Module>(toml: &str, model: &M) -> Resolved {
    let config = CompressConfig::from_toml(toml).unwrap();
    config.resolve(&ModuleIndex::from_module(model)).unwrap()
}

fn paths(r: &Resolved) -> Vec<&str> {
    r.targets.iter().map(|t| t.path.as_str()).collect()
}

#[test]
fn sparse_ratio_reaches_the_weight_and_the_bias_follows_it() {
    let r = resolve(
        "[[config_list]]\nop_names = ['conv1']\nsparse_ratio = 0.5\n",
        &SmallCnn::new(&test_device()),
    );
    assert_eq!(paths(&r), ["conv1.weight", "conv1.bias"]);
    let weight = r.target("conv1.weight").unwrap();
    assert_eq!(weight.setting.sparse_ratio, Some(0.5));
    let bias = r.target("conv1.bias").unwrap();
    assert_eq!(bias.setting.sparse_ratio, None);
    assert_eq!(bias.setting.align.as_ref().unwrap().target_name, "weight");
    assert!(weight.is_active() && !bias.is_active());
}

#[test]
fn pytorch_type_names_select_burn_layers_and_nni_target_names_map_to_burn_fields() {
    let r = resolve(
        "[[config_list]]\nop_types = ['BatchNorm2d']\ntarget_names = ['weight']\nsparse_ratio = 0.5\n",
        &SmallCnn::new(&test_device()),
    );
    assert_eq!(paths(&r), ["bn1.gamma", "bn2.gamma", "bn3.gamma"]);
    assert_eq!(r.targets[0].layer_type, "BatchNorm");
}

#[test]
fn names_intersect_with_types_and_exclusions_are_removed() {
    let model = SmallCnn::new(&test_device());
    let r = resolve(
        "[[config_list]]\nop_names_re = ['conv', 'f']\nop_types = ['Conv2d']\nexclude_op_names = ['conv2']\nsparse_ratio = 0.5\ntarget_names = ['weight']\n",
        &model,
    );
    assert_eq!(paths(&r), ["conv1.weight", "conv3.weight"]);
    // Patterns anchor at the start, like Python's re.match: 'onv' matches nothing.
    let r = resolve(
        "[[config_list]]\nop_names_re = ['onv']\nsparse_ratio = 0.5\n",
        &model,
    );
    assert!(r.targets.is_empty());
    assert_eq!(
        r.warnings,
        vec![ConfigWarning::RuleSelectsNothing {
            rule: "config_list[0]".into()
        }]
    );
}

#[test]
fn exclude_op_types_removes_a_whole_type() {
    let r = resolve(
        "[[config_list]]\nop_names_re = ['.*']\nexclude_op_types = ['BatchNorm2d', 'Conv2d']\nsparse_ratio = 0.5\n",
        &SmallCnn::new(&test_device()),
    );
    assert_eq!(paths(&r), ["fc.weight", "fc.bias"]);
}

#[test]
fn the_first_rule_that_hits_a_target_wins_and_the_second_is_reported() {
    let r = resolve(
        "[[config_list]]\nop_names = ['conv1']\nsparse_ratio = 0.25\n[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.75\n",
        &SmallCnn::new(&test_device()),
    );
    assert_eq!(
        r.target("conv1.weight").unwrap().setting.sparse_ratio,
        Some(0.25)
    );
    assert_eq!(
        r.target("conv2.weight").unwrap().setting.sparse_ratio,
        Some(0.75)
    );
    assert!(r.warnings.contains(&ConfigWarning::ConfiguredTwice {
        target: "conv1.weight".into(),
        kept: "config_list[0]".into(),
        ignored: "config_list[1]".into(),
    }));
}

#[test]
fn target_settings_override_the_shortcut_for_one_target() {
    let r = resolve(
        "[[config_list]]\nop_names = ['fc']\nsparse_ratio = 0.5\n[config_list.target_settings.weight]\nsparse_ratio = 0.9\ngranularity = 'in_channel'\n",
        &SmallCnn::new(&test_device()),
    );
    let w = r.target("fc.weight").unwrap();
    assert_eq!(w.setting.sparse_ratio, Some(0.9));
    assert_eq!(
        w.setting.granularity,
        Some(compress_core::Granularity::InChannel)
    );
}

#[test]
fn quantization_rules_target_inputs_params_and_outputs() {
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_names = ['fc']\nquant_dtype = 'uint6'\nquant_scheme = 'affine'\n",
    )
    .unwrap();
    assert_eq!(config.rules[0].mode, Mode::Quantization);
    let r = config
        .resolve(&ModuleIndex::from_module(&SmallCnn::new(&test_device())))
        .unwrap();
    assert_eq!(
        paths(&r),
        ["fc._input_", "fc.weight", "fc.bias", "fc._output_"]
    );
    let dtype = r.targets[1].setting.quant_dtype.unwrap();
    assert_eq!(
        dtype,
        QuantDtype {
            signed: false,
            bits: 6
        }
    );
    assert_eq!(dtype.range(), (0, 63));
    assert_eq!(QuantDtype::parse("int8").unwrap().range(), (-127, 127));
}

#[test]
fn selecting_multi_head_attention_selects_its_four_linears() {
    #[derive(Module, Debug)]
    struct Encoder {
        attn: MultiHeadAttention,
    }
    let model = Encoder {
        attn: MultiHeadAttentionConfig::new(8, 2).init(&test_device()),
    };
    let r = resolve(
        "[[config_list]]\nop_types = ['MultiHeadAttention']\nsparse_ratio = 0.5\ntarget_names = ['weight']\n",
        &model,
    );
    assert_eq!(
        paths(&r),
        [
            "attn.query.weight",
            "attn.key.weight",
            "attn.value.weight",
            "attn.output.weight"
        ]
    );
}

#[test]
fn user_layer_types_are_selected_by_their_struct_name() {
    let r = resolve(
        "[[config_list]]\nop_types = ['BatchNorm']\nsparse_ratio = 0.5\n",
        &Nested::new(&test_device()),
    );
    assert_eq!(
        paths(&r),
        [
            "blocks.0.bn.gamma",
            "blocks.0.bn.beta",
            "blocks.1.bn.gamma",
            "blocks.1.bn.beta"
        ]
    );
}

#[test]
fn check_describes_each_rule_in_words() {
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_types = ['Conv2d']\nexclude_op_names = ['conv1']\nsparse_ratio = 0.5\nglobal_group_id = 'g'\n",
    )
    .unwrap();
    let text = config.rules[0].describe();
    assert_eq!(
        text,
        "pruning of every layer of type Conv2d; excluding conv1; mask 50% of each target, ranked globally in group 'g'"
    );
}
