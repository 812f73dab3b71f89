//! Bad input gets a typed error that names the culprit; never a panic, never a silent answer.

use std::path::Path;

use compress_core::testing::{Nested, test_device};
use compress_core::{
    AlgorithmEntry, CompressConfig, CompressError, Dense, MaskSet, MetricInput, ModuleIndex,
    Pruner, Result, prune, targets::ConfigWarning,
};
use compress_zoo::SmallCnn;

use crate::pruners::L1;

fn parse_err(toml: &str) -> CompressError {
    CompressConfig::from_toml(toml).expect_err("config must be refused")
}

fn resolve_err(toml: &str) -> CompressError {
    let config = CompressConfig::from_toml(toml).expect("config parses");
    let index = ModuleIndex::from_module(&SmallCnn::new(&test_device()));
    config.resolve(&index).expect_err("resolution must fail")
}

fn prune_err(toml: &str, pruner: &dyn Pruner) -> CompressError {
    let config = CompressConfig::from_toml(toml).expect("config parses");
    prune(&SmallCnn::new(&test_device()), &config, pruner).expect_err("pruning must fail")
}

fn says(err: &CompressError, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should contain {p:?}");
    }
}

#[test]
fn unknown_key_is_refused_with_a_suggestion() {
    let err = parse_err("[[config_list]]\nop_types = ['Conv2d']\nsparse_ration = 0.5\n");
    assert!(
        matches!(err, CompressError::UnknownKey { ref suggestion, .. } if suggestion.as_deref() == Some("sparse_ratio"))
    );
    says(
        &err,
        &[
            "sparse_ration",
            "config_list[0]",
            "did you mean 'sparse_ratio'",
        ],
    );
}

#[test]
fn unknown_top_level_key_is_refused_with_a_suggestion() {
    let err = parse_err("[[config_lists]]\nop_types = ['Conv2d']\n");
    assert!(matches!(err, CompressError::UnknownKey { .. }));
    says(&err, &["config_lists", "did you mean 'config_list'"]);
}

#[test]
fn unknown_key_in_target_settings_is_refused() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Conv2d']\n[config_list.target_settings.weight]\nsparse_rate = 0.5\n",
    );
    assert!(matches!(err, CompressError::UnknownKey { .. }));
    says(
        &err,
        &["sparse_rate", "config_list[0].target_settings.weight"],
    );
}

#[test]
fn a_string_where_a_number_belongs_is_a_type_error() {
    let err = parse_err("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = '0.5'\n");
    assert!(matches!(err, CompressError::WrongType { .. }));
    says(
        &err,
        &["sparse_ratio", "expected a number", "string \"0.5\""],
    );
}

#[test]
fn op_types_must_be_strings() {
    let err = parse_err("[[config_list]]\nop_types = [3]\nsparse_ratio = 0.5\n");
    assert!(matches!(err, CompressError::WrongType { .. }));
    says(&err, &["op_types", "integer 3"]);
}

#[test]
fn a_ratio_of_one_and_a_half_is_out_of_range() {
    let err = parse_err("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 1.5\n");
    assert!(matches!(err, CompressError::OutOfRange { value, .. } if value == 1.5));
    says(&err, &["sparse_ratio", "1.5", "[0, 1]"]);
}

#[test]
fn a_negative_ratio_is_out_of_range() {
    let err = parse_err("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = -0.1\n");
    assert!(matches!(err, CompressError::OutOfRange { .. }));
}

#[test]
fn a_max_ratio_of_zero_is_out_of_range() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\nmax_sparse_ratio = 0.0\n",
    );
    assert!(matches!(err, CompressError::OutOfRange { .. }));
    says(&err, &["max_sparse_ratio", "(0, 1]"]);
}

#[test]
fn ratio_and_threshold_together_are_refused() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\nsparse_threshold = 0.1\n",
    );
    assert!(matches!(err, CompressError::ConflictingKeys { .. }));
    says(&err, &["sparse_ratio", "sparse_threshold"]);
}

#[test]
fn min_above_max_is_refused() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\nmin_sparse_ratio = 0.8\nmax_sparse_ratio = 0.6\n",
    );
    assert!(matches!(err, CompressError::MinAboveMax { min, max, .. } if min == 0.8 && max == 0.6));
    says(&err, &["0.8", "0.6"]);
}

#[test]
fn internal_metric_block_of_zero_is_refused() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\ndependency_group_id = 1\ninternal_metric_block = 0\n",
    );
    assert!(matches!(err, CompressError::OutOfRange { .. }));
    says(&err, &["internal_metric_block"]);
}

#[test]
fn unknown_quant_dtype_int9_is_refused() {
    let err = parse_err("[[config_list]]\nop_types = ['Linear']\nquant_dtype = 'int9'\n");
    assert!(matches!(err, CompressError::UnknownQuantDtype { ref value, .. } if value == "int9"));
    says(&err, &["int9", "int2..int8"]);
}

#[test]
fn quant_dtype_uint0_is_refused() {
    let err = parse_err("[[config_list]]\nop_types = ['Linear']\nquant_dtype = 'uint0'\n");
    assert!(matches!(err, CompressError::UnknownQuantDtype { ref value, .. } if value == "uint0"));
}

#[test]
fn unknown_quant_scheme_is_refused_with_the_choices() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Linear']\nquant_dtype = 'int8'\nquant_scheme = 'asymmetric'\n",
    );
    assert!(matches!(err, CompressError::InvalidValue { .. }));
    says(&err, &["asymmetric", "'symmetric'", "'affine'"]);
}

#[test]
fn a_bad_granularity_string_is_refused() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\ngranularity = 'out_channels'\n",
    );
    assert!(matches!(err, CompressError::InvalidGranularity { .. }));
    says(&err, &["out_channels", "config_list[0]"]);
}

#[test]
fn a_zero_kernel_entry_is_refused() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = 0.5\ngranularity = [0, 2]\n",
    );
    assert!(matches!(err, CompressError::InvalidGranularity { .. }));
    says(&err, &["positive or -1"]);
}

#[test]
fn a_block_kernel_that_does_not_divide_the_dim_is_refused() {
    // conv1.weight is [8, 1, 3, 3]: a kernel of 2 on the last dim does not divide 3.
    let err = prune_err(
        "[[config_list]]\nop_names = ['conv1']\nsparse_ratio = 0.5\ngranularity = [2]\n",
        &L1,
    );
    assert!(matches!(err, CompressError::KernelMismatch { .. }));
    says(&err, &["conv1.weight", "not divisible by 2"]);
}

#[test]
fn a_granularity_axis_the_layer_lacks_is_refused() {
    // BatchNorm's gamma is 1-D: it has no input-channel axis.
    let err = prune_err(
        "[[config_list]]\nop_types = ['BatchNorm2d']\nsparse_ratio = 0.5\ngranularity = 'in_channel'\n",
        &L1,
    );
    assert!(matches!(err, CompressError::InvalidGranularity { .. }));
    says(&err, &["bn1.gamma", "input-channel"]);
}

#[test]
fn a_config_without_config_list_is_empty() {
    assert!(matches!(
        parse_err("[algorithm]\nname = 'l1-norm'\n"),
        CompressError::EmptyConfig
    ));
    assert!(matches!(parse_err(""), CompressError::EmptyConfig));
}

#[test]
fn an_empty_config_list_is_empty() {
    assert!(matches!(
        parse_err("config_list = []\n"),
        CompressError::EmptyConfig
    ));
}

#[test]
fn a_toml_syntax_error_shows_line_and_column() {
    let err = parse_err("[[config_list]]\nop_types = ['Conv2d']\nsparse_ratio = = 0.5\n");
    assert!(
        matches!(err, CompressError::TomlSyntax { line: 3, .. }),
        "{err:?}"
    );
    says(&err, &["line 3, column"]);
}

#[test]
fn a_rule_without_a_selector_is_refused() {
    let err = parse_err("[[config_list]]\nsparse_ratio = 0.5\n");
    assert!(matches!(err, CompressError::MissingSelector { .. }));
    says(&err, &["config_list[0]", "op_types"]);
}

#[test]
fn pruning_and_quantization_keys_in_one_rule_are_refused() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Linear']\nsparse_ratio = 0.5\nquant_dtype = 'int8'\n",
    );
    assert!(matches!(err, CompressError::ConflictingKeys { .. }));
}

#[test]
fn a_fusion_group_of_one_layer_is_refused() {
    let err = parse_err(
        "[[config_list]]\nop_types = ['Conv2d']\nquant_dtype = 'int8'\nfuse_names = [['conv1']]\n",
    );
    assert!(matches!(err, CompressError::InvalidValue { .. }));
    says(&err, &["fuse_names", "at least two"]);
}

#[test]
fn a_regex_that_does_not_compile_is_refused() {
    let err = parse_err("[[config_list]]\nop_names_re = ['conv[(']\nsparse_ratio = 0.5\n");
    assert!(matches!(err, CompressError::InvalidRegex { ref pattern, .. } if pattern == "conv[("));
    says(&err, &["conv[(", "op_names_re"]);
}

#[test]
fn an_unknown_op_name_is_refused_with_a_suggestion() {
    let err = resolve_err("[[config_list]]\nop_names = ['conv4']\nsparse_ratio = 0.5\n");
    assert!(matches!(err, CompressError::UnknownOpName { ref name, .. } if name == "conv4"));
    says(
        &err,
        &["conv4", "config_list[0].op_names", "did you mean 'conv"],
    );
}

#[test]
fn an_unknown_excluded_op_name_is_refused() {
    let err = resolve_err(
        "[[config_list]]\nop_types = ['Conv2d']\nexclude_op_names = ['convl']\nsparse_ratio = 0.5\n",
    );
    assert!(matches!(err, CompressError::UnknownOpName { .. }));
    says(&err, &["convl", "exclude_op_names"]);
}

#[test]
fn an_op_type_that_matches_nothing_is_a_warning_not_an_error() {
    let config = CompressConfig::from_toml(
        "[[config_list]]\nop_types = ['Conv2d', 'Conv1d']\nsparse_ratio = 0.5\n",
    )
    .unwrap();
    let index = ModuleIndex::from_module(&SmallCnn::new(&test_device()));
    let resolved = config.resolve(&index).unwrap();
    assert_eq!(
        resolved.warnings,
        vec![ConfigWarning::OpTypeMatchesNothing {
            rule: "config_list[0]".into(),
            op_type: "Conv1d".into()
        }]
    );
    assert!(
        resolved.warnings[0]
            .to_string()
            .contains("'Conv1d' matches no layer")
    );
    assert_eq!(resolved.targets.iter().filter(|t| t.is_active()).count(), 3);
}

#[test]
fn an_unknown_target_name_is_refused_with_the_available_ones() {
    let err = resolve_err(
        "[[config_list]]\nop_names = ['conv1']\ntarget_names = ['wieght']\nsparse_ratio = 0.5\n",
    );
    assert!(matches!(err, CompressError::UnknownTarget { .. }));
    says(&err, &["wieght", "conv1", "Conv2d", "weight, bias"]);
}

#[test]
fn a_user_layer_without_a_spec_is_refused_by_name() {
    let config =
        CompressConfig::from_toml("[[config_list]]\nop_names = ['scale']\nsparse_ratio = 0.5\n")
            .unwrap();
    let index = ModuleIndex::from_module(&Nested::new(&test_device()));
    let err = config.resolve(&index).unwrap_err();
    assert!(matches!(err, CompressError::UnsupportedLayer { .. }));
    says(&err, &["'scale'", "'Scale'", "LayerSpec"]);
}

#[test]
fn dependency_group_members_with_different_metric_shapes_are_refused() {
    // conv1 has 8 channels, conv2 16.
    let err = prune_err(
        "[[config_list]]\nop_names = ['conv1', 'conv2']\nsparse_ratio = 0.5\ndependency_group_id = 'g'\n",
        &L1,
    );
    assert!(matches!(
        err,
        CompressError::GroupMismatch {
            kind: "dependency",
            ..
        }
    ));
    says(
        &err,
        &[
            "group 'g'",
            "conv1.weight",
            "conv2.weight",
            "[8, 1, 1, 1]",
            "[16, 1, 1, 1]",
        ],
    );
}

#[test]
fn dependency_group_members_with_different_ratios_are_refused() {
    let err = prune_err(
        "[[config_list]]\nop_names = ['conv2']\nsparse_ratio = 0.5\ndependency_group_id = 'g'\n\
         [[config_list]]\nop_names = ['conv3']\nsparse_ratio = 0.25\ndependency_group_id = 'g'\n",
        &L1,
    );
    assert!(matches!(err, CompressError::GroupMismatch { .. }));
    says(&err, &["conv2.weight", "0.5", "conv3.weight", "0.25"]);
}

#[test]
fn a_non_finite_metric_is_refused() {
    struct Nan;
    impl Pruner for Nan {
        fn metric(&self, input: &MetricInput<'_>) -> Result<Dense<f32>> {
            let shape =
                input
                    .scaling
                    .shrunk_shape(input.weight.shape(), true, &input.target.path)?;
            Ok(Dense::full(shape, f32::NAN))
        }
    }
    let err = prune_err(
        "[[config_list]]\nop_names = ['conv1']\nsparse_ratio = 0.5\n",
        &Nan,
    );
    assert!(matches!(err, CompressError::NonFiniteMetric { .. }));
    says(&err, &["conv1.weight", "NaN"]);
}

#[test]
fn a_metric_of_the_wrong_shape_is_refused() {
    struct Wrong;
    impl Pruner for Wrong {
        fn metric(&self, _: &MetricInput<'_>) -> Result<Dense<f32>> {
            Ok(Dense::full(vec![3], 1.0))
        }
    }
    let err = prune_err(
        "[[config_list]]\nop_names = ['conv1']\nsparse_ratio = 0.5\n",
        &Wrong,
    );
    assert!(matches!(err, CompressError::MetricShape { .. }));
    says(&err, &["conv1.weight", "[8, 1, 1, 1]", "[3]"]);
}

#[test]
fn a_mask_of_the_wrong_shape_is_refused_and_the_model_untouched() {
    let model = SmallCnn::new(&test_device());
    let before = model.conv1.weight.val().into_data();
    let mut masks = MaskSet::default();
    masks.insert("conv1.weight", Dense::full(vec![8, 1, 3, 2], 0u8));
    let err = masks.apply_hard(&model).unwrap_err();
    assert!(matches!(err, CompressError::ShapeMismatch { .. }));
    says(
        &err,
        &[
            "'conv1.weight'",
            "expected [8, 1, 3, 3]",
            "found [8, 1, 3, 2]",
        ],
    );
    assert_eq!(model.conv1.weight.val().into_data(), before);
}

#[test]
fn a_mask_for_a_parameter_the_model_lacks_is_refused() {
    let mut masks = MaskSet::default();
    masks.insert("conv1.wieght", Dense::full(vec![8, 1, 3, 3], 1u8));
    let err = masks
        .apply_soft(&SmallCnn::new(&test_device()))
        .unwrap_err();
    assert!(matches!(err, CompressError::UnknownParam { .. }));
    says(&err, &["conv1.wieght", "did you mean 'conv1.weight'"]);
}

#[test]
fn a_truncated_mask_file_is_refused() {
    let mut masks = MaskSet::default();
    masks.insert("conv1.weight", Dense::full(vec![8, 1, 3, 3], 1u8));
    let bytes = masks.to_bytes().unwrap();
    let err =
        MaskSet::from_bytes(&bytes[..bytes.len() - 10], Path::new("m.safetensors")).unwrap_err();
    assert!(matches!(err, CompressError::InvalidMaskFile { .. }));
    says(&err, &["m.safetensors"]);
}

#[test]
fn a_corrupt_mask_file_is_refused() {
    let err = MaskSet::from_bytes(
        b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage",
        Path::new("bad.safetensors"),
    )
    .unwrap_err();
    assert!(matches!(err, CompressError::InvalidMaskFile { .. }));
    says(&err, &["bad.safetensors"]);
}

#[test]
fn a_float_mask_file_is_refused() {
    let data = [0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    let bytes = safetensors::serialize(vec![("fc.weight", view)], &None).unwrap();
    let err = MaskSet::from_bytes(&bytes, Path::new("f.safetensors")).unwrap_err();
    says(&err, &["fc.weight", "F32", "u8"]);
}

#[test]
fn mask_values_other_than_zero_and_one_are_refused() {
    let data = [0u8, 1, 2, 1];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![4], &data).unwrap();
    let bytes = safetensors::serialize(vec![("fc.bias", view)], &None).unwrap();
    let err = MaskSet::from_bytes(&bytes, Path::new("v.safetensors")).unwrap_err();
    says(&err, &["fc.bias", "value 2"]);
}

#[test]
fn a_missing_mask_file_is_an_io_error_naming_the_file() {
    let err = MaskSet::load("/nonexistent/masks.safetensors").unwrap_err();
    assert!(matches!(err, CompressError::Io { .. }));
    says(&err, &["/nonexistent/masks.safetensors"]);
}

#[test]
fn an_unknown_algorithm_is_refused() {
    let err = AlgorithmEntry::find("l1-nrom").unwrap_err();
    assert!(matches!(err, CompressError::UnknownAlgorithm { .. }));
    says(&err, &["l1-nrom"]);
}
