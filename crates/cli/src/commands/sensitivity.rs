//! `burn-compress sensitivity`: NNI's sensitivity analysis of a zoo model. Each Conv2d and
//! Linear layer (or each target of `--config`) is pruned alone to every sparsity, and the test
//! accuracy is measured; the table prints as text or JSON, and goes to a CSV and a plot.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::prelude::*;
use burn_compress::core::registry::MetricNeeds;
use burn_compress::core::sensitivity::{
    EarlyStop, SensitivityAnalysis, SensitivityTable, parse_sparsities, sparsity_key,
};
use burn_compress::core::train::accuracy;
use burn_compress::zoo::{ImageClassifier, dispatch};
use burn_compress::{AlgorithmEntry, CompressConfig, CompressError, Pruner};

use crate::cli::ModelArgs;
use crate::commands::prune::load_images;
use crate::table::{percent, table};

/// Arguments of `sensitivity`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Image dataset (safetensors `images` u8 + `labels`); the metric is the accuracy on its
    /// test split (index % 5 == 4).
    #[arg(long)]
    data: PathBuf,
    /// Restrict the targets to the config's pruning rules (their ratios are not used); its
    /// [algorithm] table gives the pruner's options. Default: every Conv2d and Linear.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Registry name of the pruner; default: the config's [algorithm] name, else l1-norm.
    #[arg(long)]
    algorithm: Option<String>,
    /// Sparsities to sweep, comma-separated, each in (0, 1) with at most two decimals.
    #[arg(long, default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")]
    sparsities: String,
    /// Stop a layer's sweep at the first point where MODE:VALUE holds: minimize (acc < VALUE),
    /// maximize (acc > VALUE), dropped (acc < baseline - VALUE), raised (acc > baseline + VALUE).
    /// The point that stops it is recorded.
    #[arg(long)]
    early_stop: Option<String>,
    /// Print `{"metric": "accuracy", "baseline": .., "layers": {layer: {sparsity: acc}}}`.
    #[arg(long)]
    json: bool,
    /// Also write NNI's CSV (`layername,s1,s2,...`).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also plot accuracy against sparsity, one line per layer: `.svg` or `.png`.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// The pruner's registry name and its options: `--algorithm`, else the config's [algorithm],
/// else `l1-norm`; the config's options apply when the names agree. Only one-shot pruners:
/// the command trains nothing.
fn pruner(
    args: &Args,
    config: Option<&CompressConfig>,
) -> anyhow::Result<(String, Box<dyn Pruner>)> {
    let section = config.and_then(|c| c.algorithm.as_ref());
    let (name, options) = match (&args.algorithm, section) {
        (Some(name), Some(s)) if *name == s.name => (name.clone(), s.options.clone()),
        (Some(name), _) => (name.clone(), Default::default()),
        (None, Some(s)) => (s.name.clone(), s.options.clone()),
        (None, None) => ("l1-norm".to_string(), Default::default()),
    };
    let pruner = AlgorithmEntry::find(&name)?.build_pruner(&options)?;
    if pruner.needs() != MetricNeeds::Weights {
        bail!(
            "'{name}' scores weights from training (gradients or learned scores); `sensitivity` \
             runs one-shot pruners (l1-norm, l2-norm, fpgm, level). From the library, \
             SensitivityAnalysis::with_gradients takes a gradient pruner's statistics"
        );
    }
    Ok((name, pruner))
}

/// Refuse a dataset without labels before anything is computed: accuracy needs them.
fn check_labels(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        CompressError::InvalidDataset {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    if !meta.tensors().contains_key("labels") {
        return Err(CompressError::InvalidDataset {
            path: path.to_path_buf(),
            message: "it has no 'labels' tensor, and the accuracy metric needs labels".into(),
        }
        .into());
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let arch = args.model.arch()?;
    // Every input is checked before the model is evaluated.
    let sparsities = parse_sparsities(&args.sparsities)?;
    let early_stop: Option<EarlyStop> = args.early_stop.as_deref().map(str::parse).transpose()?;
    let config = args
        .config
        .as_ref()
        .map(CompressConfig::from_file)
        .transpose()?;
    let (name, pruner) = pruner(&args, config.as_ref())?;
    if let Some(plot) = &args.plot {
        plot_format(plot)?;
    }
    check_labels(&args.data)?;
    let (_, test) = load_images(&args.data, arch)?;

    let mut analysis = SensitivityAnalysis::new(pruner.as_ref()).with_sparsities(&sparsities)?;
    if let Some(config) = config {
        analysis = analysis.with_config(config);
    }
    if let Some(stop) = early_stop {
        analysis = analysis.with_early_stop(stop);
    }
    let device = Device::flex();
    let model = args.model.load(arch, &device)?;
    let quiet = args.json;
    let result = dispatch!(images &model,
        m => analysis.run_observed(
            m,
            |m| Ok(accuracy(m, &test, |m, x| m.classify(x), &device)),
            |p| if !quiet {
                eprintln!(
                    "{} at {}: {}{}",
                    p.layer,
                    sparsity_key(p.sparsity),
                    percent(p.value),
                    if p.stopped { " (early stop)" } else { "" }
                );
            },
        )?,
        _t => bail!("'{arch}' takes token ids: sensitivity analysis measures accuracy on images")
    );

    if let Some(path) = &args.csv {
        write(path, result.to_csv().as_bytes())?;
    }
    if let Some(path) = &args.plot {
        let title = format!("{arch}: accuracy with one layer pruned ({name})");
        write(path, &plot(&result, plot_format(path)?, &title)?)?;
    }
    if args.json {
        println!("{}", one_line_json(&result)?);
        return Ok(());
    }
    let keys = result.sparsity_keys();
    let header: Vec<&str> = std::iter::once("layer")
        .chain(keys.iter().map(String::as_str))
        .collect();
    let mut t = table(&header);
    for (layer, row) in &result.layers {
        let cells = keys
            .iter()
            .map(|k| row.get(k).map(|v| percent(*v)).unwrap_or_default());
        t.add_row(
            std::iter::once(layer.clone())
                .chain(cells)
                .collect::<Vec<_>>(),
        );
    }
    println!(
        "{name} sensitivity of {arch}: test accuracy {} unpruned, one layer pruned at a time",
        percent(result.baseline)
    );
    println!("{t}");
    Ok(())
}

/// Write `bytes` to `path`, creating its folder.
fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The table as one line, Python's `json.dumps` spacing: `{"metric": "accuracy", ...}`.
fn one_line_json(table: &SensitivityTable) -> anyhow::Result<String> {
    struct Spaced;
    impl serde_json::ser::Formatter for Spaced {
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                writer.write_all(b", ")
            }
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
        ) -> std::io::Result<()> {
            writer.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    serde::Serialize::serialize(table, &mut ser)?;
    Ok(String::from_utf8(out)?)
}

/// The image formats `--plot` writes, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlotFormat {
    Svg,
    Png,
}

/// The format of `path`: `.svg` or `.png`, anything else refused.
fn plot_format(path: &Path) -> anyhow::Result<PlotFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok(PlotFormat::Svg),
        Some("png") => Ok(PlotFormat::Png),
        _ => bail!(
            "--plot '{}': the file name must end in .svg or .png",
            path.display()
        ),
    }
}

/// Plot size in pixels (SVG user units).
const PLOT_SIZE: (u32, u32) = (900, 560);

/// DejaVu Sans, subset to ASCII (10 KB; licence in `assets/LICENSE-DejaVu.txt`): plotters
/// rasterizes PNG text with it (ab_glyph) and lays out SVG text with its metrics.
static FONT: &[u8] = include_bytes!("../../assets/dejavu-sans-ascii.ttf");

/// The plot as SVG text or PNG bytes: the metric against sparsity, one line per layer, the
/// unpruned baseline dashed, a legend and axis labels.
fn plot(table: &SensitivityTable, format: PlotFormat, title: &str) -> anyhow::Result<Vec<u8>> {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // The font is a constant, so registering it cannot fail at run time but for a bad asset,
        // which the plot tests catch.
        let _ =
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT);
    });
    let (w, h) = PLOT_SIZE;
    match format {
        PlotFormat::Svg => {
            let mut svg = String::new();
            draw(
                plotters::backend::SVGBackend::with_string(&mut svg, PLOT_SIZE),
                table,
                title,
            )?;
            Ok(svg.into_bytes())
        }
        PlotFormat::Png => {
            let mut rgb = vec![0u8; (w * h * 3) as usize];
            draw(
                plotters::backend::BitMapBackend::with_buffer(&mut rgb, PLOT_SIZE),
                table,
                title,
            )?;
            let mut out = Vec::new();
            let mut encoder = png::Encoder::new(&mut out, w, h);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&rgb)?;
            writer.finish()?;
            Ok(out)
        }
    }
}

fn draw<DB: plotters::prelude::DrawingBackend>(
    backend: DB,
    table: &SensitivityTable,
    title: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing the plot: {e}");
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let rows: Vec<(&String, Vec<(f64, f64)>)> = table
        .layers
        .iter()
        .map(|(layer, row)| {
            let mut points: Vec<(f64, f64)> = row
                .iter()
                .filter_map(|(k, v)| k.parse::<f64>().ok().map(|s| (s, *v)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (layer, points)
        })
        .collect();
    let values = rows
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, v)| v))
        .chain([table.baseline]);
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let pad = ((hi - lo) * 0.05).max(0.01);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..1.0, (lo - pad)..(hi + pad))
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("sparsity of the pruned layer")
        .y_desc(table.metric.as_str())
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(fail)?;
    let grey = RGBColor(120, 120, 120);
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, table.baseline), (1.0, table.baseline)],
            6,
            4,
            grey.stroke_width(1),
        ))
        .map_err(fail)?
        .label(format!("unpruned ({})", table.baseline))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(1)));
    for (i, (layer, points)) in rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(fail)?
            .label(layer.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(fail)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(fail)?;
    root.present().map_err(fail)?;
    Ok(())
}
